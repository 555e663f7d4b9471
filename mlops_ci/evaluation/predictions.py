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

A model answers one output per row (evaluate.target is one column): one predicting several
(``MultiOutputClassifier``, a regressor fitted on a 2-D target) is refused in one line
(:class:`MultipleOutputs`, exit 2) where its answers or its description first show it.
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


class MultipleOutputs(InputError):
    """The model predicts several outputs per row; mlops-ci scores, packages and serves one."""


def several_outputs(who: str, count: int) -> MultipleOutputs:
    return MultipleOutputs(
        f"{who} predicts {count} outputs per row; mlops-ci evaluates, compares, packages and "
        "serves a model that predicts one (evaluate.target)",
        hint="fit one model per target column (a model.name each), or one combined target",
    )


def one_output(values: np.ndarray[Any, Any], who: str) -> np.ndarray[Any, Any]:
    """A model's answer, a row per row, as one output per row: [rows] (a [rows, 1] column is
    that column); refused (:class:`MultipleOutputs`) where a row holds several."""
    if values.ndim == 2 and values.shape[1] == 1:
        return values[:, 0]
    if values.ndim > 1:
        raise several_outputs(who, int(np.prod(values.shape[1:])))
    return values


def outputs_of(model: Any) -> int:
    """How many outputs per row a fitted scikit-learn model says it predicts (the final step
    of a pipeline): a classes_ array per output, ``n_outputs_``, the estimators of a
    ``MultiOutputClassifier``/``MultiOutputRegressor`` or a chain; 1 when it says nothing."""
    steps = getattr(model, "steps", None)
    final = steps[-1][1] if isinstance(steps, list) and steps else model
    try:
        classes = getattr(final, "classes_", None)
        if isinstance(classes, list) and all(isinstance(c, np.ndarray) for c in classes):
            return max(len(classes), 1)
        if isinstance(classes, np.ndarray) and classes.ndim == 1:
            return 1  # one label per row (MLPClassifier's n_outputs_ counts its output units)
        count = getattr(final, "n_outputs_", None)
        if isinstance(count, (int, np.integer)) and count > 1:
            return int(count)
        from sklearn.multioutput import (
            ClassifierChain,
            MultiOutputClassifier,
            MultiOutputRegressor,
            RegressorChain,
        )

        wrappers = (MultiOutputClassifier, MultiOutputRegressor, ClassifierChain, RegressorChain)
        fitted = getattr(final, "estimators_", None)
        if isinstance(final, wrappers) and isinstance(fitted, list):
            return max(len(fitted), 1)
    except Exception:  # a property of the user's model that raises, or no scikit-learn
        return 1
    return 1


@dataclass(frozen=True)
class Scored:
    predictions: np.ndarray[Any, Any]
    kind: str  # classification | regression | "" (a model scikit-learn cannot tell)
    columns: tuple[str, ...] | None  # the columns the model was fitted on
    importance: Importance | None = None  # permutation importance, when train recorded it


def predict(model: Any, data: EvaluationData, label: str, where: str = "") -> np.ndarray[Any, Any]:
    """The model's predictions on the evaluation rows, from the columns it was trained on; one
    per row (``where``, naming what the model is, when its answer holds several)."""
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
    return one_output(out, f"{where or data.path}: the {label} model")


def kind_of(model: Any) -> str:
    """What scikit-learn says the model is; "" for what it cannot tell (an ONNX model). A
    model in the model runner says it itself (``model_kind``, asked beside the model).

    The runner's child asks it of every model it loads (describing it, before its classes):
    a model that says it predicts several outputs per row (:func:`outputs_of`) is refused
    there, on every verb, in one line."""
    said = getattr(model, "model_kind", None)
    if isinstance(said, str):
        return said
    count = outputs_of(model)
    if count > 1:
        raise several_outputs(f"the model ({type(model).__name__})", count)
    from sklearn.base import is_classifier, is_regressor

    try:
        if is_classifier(model):
            return "classification"
        return "regression" if is_regressor(model) else ""
    except Exception:  # not a scikit-learn estimator: nothing to tell it by
        return ""


def scored(model: Any, data: EvaluationData, label: str, where: str = "") -> Scored:
    return Scored(predict(model, data, label, where), kind_of(model), trained_columns(model))


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
    out if it fails). A model predicting several outputs per row is refused (raised): no
    verb after train could evaluate, package or serve it."""
    started = time.perf_counter()
    try:
        result = scored(model, data, "trained", "mlops.yaml: train.outputs.model")
    except MultipleOutputs:
        raise
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
                "dtypes": _dtypes(data),  # evaluate.dtypes changes what the model is given
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


def _dtypes(data: EvaluationData) -> list[str]:
    return [str(d) for d in data.features.dtypes]


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
            and doc.get("dtypes") == _dtypes(data)
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
