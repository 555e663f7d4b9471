"""A model's predictions on evaluate.data, scored once, when train has the model in memory.

`compare` needs each model's predictions on the evaluation rows. Loading a logged scikit-learn
model means importing skops and all of scikit-learn (2.5 s of a 4 s `compare` on the iris
example) to score rows that train could score with the model it already holds. So train logs
``mlops/evaluation.json`` in the run: the predictions, what the model is (classifier or
regressor) and the columns it was fitted on, with the sha256 of the data they were scored on.
`compare` uses them only when that sha256 and the column list match the evaluation data it
reads now, and the record comes from this version of mlops-ci; otherwise it loads and scores
the model, as before. Both models are still scored on the same rows: that is what the sha256
says.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from mlops_ci import __version__
from mlops_ci.errors import InputError
from mlops_ci.evaluation.data import EvaluationData
from mlops_ci.evaluation.importance import Importance, Progress, Settings, permutation
from mlops_ci.model.features import model_frame, trained_columns


@dataclass(frozen=True)
class Scored:
    predictions: np.ndarray[Any, Any]
    kind: str  # classification | regression | "" (a model scikit-learn cannot tell)
    columns: tuple[str, ...] | None  # the columns the model was fitted on
    importance: Importance | None = None  # permutation importance, when train recorded it


def predict(model: Any, data: EvaluationData, label: str) -> np.ndarray[Any, Any]:
    """The model's predictions on the evaluation rows, from the columns it was trained on."""
    features = model_frame(model, data.features, data.path, f"the {label}")
    try:
        out = np.asarray(model.predict(features))
    except Exception as err:  # the user's model: any failure is bad input, named
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise InputError(f"{data.path}: the {label} model cannot score it: {first}") from None
    if out.shape[0] != data.rows:
        raise InputError(
            f"{data.path}: the {label} model returned {out.shape[0]} rows for {data.rows}"
        )
    return out


def kind_of(model: Any) -> str:
    """What scikit-learn says the model is; "" for what it cannot tell (an ONNX model). A
    model in the model runner says it itself (``model_kind``, asked beside the model)."""
    said = getattr(model, "model_kind", None)
    if isinstance(said, str):
        return said
    from sklearn.base import is_classifier, is_regressor

    try:
        if is_classifier(model):
            return "classification"
        return "regression" if is_regressor(model) else ""
    except Exception:  # not a scikit-learn estimator: nothing to tell it by
        return ""


def scored(model: Any, data: EvaluationData, label: str) -> Scored:
    return Scored(predict(model, data, label), kind_of(model), trained_columns(model))


@dataclass(frozen=True)
class Evaluated:
    """What train records of its model on the evaluation rows (``text``: the artifact's JSON,
    None when the model cannot score them) and what it took."""

    text: str | None
    importance: Importance | None = None
    predict_s: float = 0.0


def record(
    model: Any,
    data: EvaluationData,
    settings: Settings | None = None,
    progress: Progress | None = None,
) -> Evaluated:
    """The JSON train logs. With ``settings``, the model's permutation importance too (left
    out if it fails)."""
    started = time.perf_counter()
    try:
        result = scored(model, data, "trained")
    except InputError:
        return Evaluated(None)
    predict_s = time.perf_counter() - started
    computed = None
    if settings is not None:
        try:
            computed = permutation(model, data, settings, "trained", progress=progress)
        except InputError:
            computed = None  # compare computes it, or says why it cannot
    found = computed.to_dict() if computed is not None and computed.finite() else None
    values = result.predictions
    if values.ndim != 1 or values.dtype.kind not in "biufUO":
        return Evaluated(None, computed, predict_s)  # compare scores the model itself
    try:
        text = json.dumps(
            {
                "mlops_ci": __version__,
                "sha256": data.sha256,
                "features": [str(c) for c in data.features.columns],
                "kind": result.kind,
                "columns": list(result.columns) if result.columns is not None else None,
                "predictions": values.tolist(),
                "importance": found,
            },
            allow_nan=False,  # a NaN prediction: scored again by compare, which names it
        )
    except (TypeError, ValueError):  # values JSON cannot hold: compare scores the model itself
        return Evaluated(None, computed, predict_s)
    return Evaluated(text, computed, predict_s)


def cached(text: str | None, data: EvaluationData) -> Scored | None:
    """The predictions a run recorded (``text``, its evaluation artifact) when they are on
    exactly these rows, or None (then the model is scored)."""
    if text is None:
        return None
    try:
        doc = json.loads(text)
        fits = (
            doc["mlops_ci"] == __version__
            and doc["sha256"] == data.sha256
            and doc["features"] == [str(c) for c in data.features.columns]
            and len(doc["predictions"]) == data.rows
        )
        if not fits:
            return None
        columns = tuple(doc["columns"]) if doc["columns"] is not None else None
        found = doc.get("importance")
        importance = Importance.from_dict(found) if isinstance(found, dict) else None
        return Scored(np.asarray(doc["predictions"]), str(doc["kind"]), columns, importance)
    except (ValueError, KeyError, TypeError):  # not a record this code wrote: score anew
        return None
