"""scikit-learn → ONNX with skl2onnx, and the parity check that the two give the same answers.

An all-numeric model whose pipeline does not select columns by name takes one float32 tensor
``input`` of shape [rows, features] (the ``matrix`` layout, features in the evaluation data's
column order). Any other model takes one input per column (the ``columns`` layout), named like
the column, of shape [rows, 1]: float32 for numbers, string for text. Classifiers return
``label`` and ``probabilities`` (no ZipMap, so outputs are plain tensors); regressors
``variable``. A classifier's label is always its own ``predict`` (a thresholded classifier's
too: its conversion, whose label would be the arg-max, is refused), and the probability of a
row is the predicted label's column of ``predict_proba`` (:func:`label_probability`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from mlops_ci.errors import InputError
from mlops_ci.model.features import STRING, FeatureSchema, string_values
from mlops_ci.model.onnxmodel import runtime_reason as runtime_reason  # one for every caller
from mlops_ci.model.onnxmodel import shortened

INPUT_NAME = "input"
MATRIX, COLUMNS, TENSORS = "matrix", "columns", "tensors"  # TENSORS: the graph's own inputs


@dataclass(frozen=True)
class Outputs:
    """What a model says for a batch: labels (classifiers) and scores (probabilities/values)."""

    labels: npt.NDArray[Any] | None
    scores: npt.NDArray[np.float64]


@dataclass(frozen=True)
class Tolerance:
    """|native - onnx| <= atol + rtol * |native| per output, as numpy.isclose; up to
    ``max_row_share`` of the rows may differ (float32 inputs landing on the other side of a
    tree threshold) before parity fails."""

    atol: float
    rtol: float
    max_row_share: float

    @staticmethod
    def for_task(
        task: str, atol: float | None, rtol: float | None, max_row_share: float
    ) -> Tolerance:
        """Defaults that pass float32 rounding: probabilities 1e-3 absolute and relative;
        regression values 1e-4 absolute and relative (targets of any magnitude)."""
        default = DEFAULT_TOLERANCE.get(task, DEFAULT_TOLERANCE["regression"])
        return Tolerance(
            default[0] if atol is None else atol,
            default[1] if rtol is None else rtol,
            max_row_share,
        )


DEFAULT_TOLERANCE = {"classification": (1e-3, 1e-3), "regression": (1e-4, 1e-4)}


@dataclass(frozen=True)
class Parity:
    rows: int
    max_abs_diff: float
    max_rel_diff: float
    label_agreement: float | None  # share of rows with the same label (classifiers)
    differing_rows: int  # rows beyond the tolerance or with another label
    tolerance: Tolerance
    worst_rows: tuple[tuple[int, float, Any, Any], ...]  # (row, |Δ|, native, onnx)

    @property
    def allowed_rows(self) -> int:
        return int(self.tolerance.max_row_share * self.rows + 1e-9)

    @property
    def passed(self) -> bool:
        return self.differing_rows <= self.allowed_rows


def as_float32(features: Any) -> npt.NDArray[np.float32]:
    """All-numeric evaluation features as the float32 matrix of the ``matrix`` layout."""
    frame = features
    non_numeric = [str(c) for c, kind in frame.dtypes.items() if kind.kind not in "biuf"]
    if non_numeric:
        raise InputError(
            f"evaluate.data: column(s) {', '.join(non_numeric)} are not numeric; the ONNX "
            "input is one float tensor",
            hint="encode them inside the model's pipeline, or set package.onnx: false",
        )
    return np.ascontiguousarray(frame.to_numpy(dtype=np.float32))


def is_classifier(model: Any) -> bool:
    """A classifier: it has predict_proba, or scikit-learn says so (LinearSVC, RidgeClassifier
    and other classifiers without probabilities). A model in the model runner says it itself
    (``model_is_classifier``, asked beside the model)."""
    said = getattr(model, "model_is_classifier", None)
    if isinstance(said, bool):
        return said
    if callable(getattr(model, "predict_proba", None)):
        return True
    try:
        from sklearn.base import is_classifier as sklearn_says

        return bool(sklearn_says(model))
    except ImportError:  # a serving image with ONNX only
        return False
    except Exception:  # not a scikit-learn estimator (no tags): it says by predict_proba
        return False


def class_labels(model: Any) -> tuple[str, ...]:
    """A classifier's labels in the column order of its probabilities (empty for regressors)."""
    classes = getattr(model, "classes_", None) if is_classifier(model) else None
    return () if classes is None else tuple(str(c) for c in np.asarray(classes).tolist())


@dataclass(frozen=True)
class Converted:
    onnx: bytes
    layout: str  # matrix | columns


def convert_sklearn(model: Any, features: Any, target_opset: int | None) -> Converted:
    """Serialized ONNX model in the ``matrix`` layout where it converts to it, else ``columns``;
    a failing conversion is a ``ConversionRefused`` naming the estimator the converter refused.
    A model that already is ONNX (``model.flavor: onnx``) is only given mlops-ci's input and
    output names."""
    from mlops_ci.model.onnxmodel import OnnxModel, standardize

    if isinstance(model, OnnxModel):
        return Converted(*standardize(model, tuple(str(c) for c in features.columns)))
    refuse_thresholds(model)
    schema = FeatureSchema.of_frame(features)
    first_error: BaseException | None = None
    if schema.all_numeric:
        try:
            return Converted(_to_onnx(model, _matrix_types(schema), target_opset), MATRIX)
        except Exception as err:  # e.g. a ColumnTransformer selecting columns by name
            first_error = err
    try:
        return Converted(_to_onnx(model, _column_types(schema), target_opset), COLUMNS)
    except Exception as err:  # skl2onnx raises many kinds for unsupported models
        shown: BaseException = first_error or err  # the matrix layout's error, when tried
        if "column name" in str(shown) or "among names" in str(shown):
            shown = err  # the by-name failure of the matrix layout says nothing useful
        raise ConversionRefused(
            f"ONNX conversion of {refused_step(shown, model)} failed: {first_line(shown)}",
            hint="set package.onnx: auto (the default) or false to package the native model",
        ) from None


class ConversionRefused(InputError):
    """The converter cannot turn this model into ONNX (``package.onnx: auto`` falls back)."""


class OnnxFailed(InputError):
    """onnxruntime cannot load or run an ONNX graph here (``package.onnx: auto`` falls back
    to the native model when the graph is one it converted)."""


def refuse_thresholds(model: Any) -> None:
    """A thresholded classifier (scikit-learn's ``FixedThresholdClassifier``,
    ``TunedThresholdClassifierCV``) predicts by its threshold, not by the largest probability;
    skl2onnx converts the classifier inside and labels by the arg-max (or not at all), so
    its graph would answer other labels, on few enough rows to pass parity's row share."""
    try:
        from sklearn.model_selection._classification_threshold import BaseThresholdClassifier
    except ImportError:  # a scikit-learn without them (< 1.5), or none at all
        return
    from mlops_ci.packaging.frameworks import estimators

    for est in estimators(model):
        if isinstance(est, BaseThresholdClassifier):
            threshold = getattr(est, "best_threshold_", getattr(est, "threshold", "?"))
            shown = f"{threshold:.4g}" if isinstance(threshold, float) else str(threshold)
            named = type(est).__name__ + ("" if est is model else f" (in {_describe(model)})")
            raise ConversionRefused(
                f"ONNX conversion of {named} refused: "
                f"it predicts by its threshold ({shown}), the converted graph by the largest "
                "probability",
                hint="set package.onnx: auto (the default) or false to package the native model",
            )


def first_line(err: BaseException, width: int = 300) -> str:
    """An exception's first line, cut at a word boundary (skl2onnx appends whole nodes)."""
    text = str(err).strip()
    line = text.splitlines()[0] if text else type(err).__name__
    line = line.split(" and attributes=")[0]
    return shortened(line, width)


def refused_step(err: BaseException, model: Any) -> str:
    """The estimator whose converter raised ``err`` (skl2onnx calls each converter with the
    operator holding it as ``raw_operator``), inside the model it belongs to; the model alone
    when the traceback does not say."""
    found = None
    tb = err.__traceback__
    while tb is not None:
        operator = tb.tb_frame.f_locals.get("operator")
        raw = getattr(operator, "raw_operator", None)
        if raw is not None:
            found = raw
        tb = tb.tb_next
    whole = _describe(model)
    if found is None or found is model:
        return whole
    return f"{type(found).__name__} (in {whole})"


def _to_onnx(model: Any, types: list[tuple[str, Any]], target_opset: int | None) -> bytes:
    from skl2onnx import to_onnx

    from mlops_ci.packaging.frameworks import for_conversion, patch_converters, register_converters

    patch_converters()
    model = for_conversion(model)
    opset: int | dict[str, int] | None = target_opset
    if register_converters(model):  # onnxmltools' tree converters write ai.onnx.ml 3 at most
        from skl2onnx import get_latest_tested_opset_version

        opset = {"": target_opset or get_latest_tested_opset_version(), "ai.onnx.ml": 3}
    onx = to_onnx(model, initial_types=types, options=_no_zipmap(model), target_opset=opset)
    _restore_input_names(onx, [name for name, _ in types])
    return bytes(onx.SerializeToString())


def _restore_input_names(onx: Any, names: list[str]) -> None:
    """skl2onnx cleans input names into identifiers (``a|b`` becomes ``a_b``); give the graph
    back the column names, so every feed is keyed by the column itself."""
    from mlops_ci.model.onnxmodel import rename_tensor

    graph = onx.graph
    taken = {out for node in graph.node for out in node.output} | {i.name for i in graph.input}
    for graph_input, name in zip(list(graph.input), names, strict=False):
        if graph_input.name == name:
            continue
        if name in taken:
            raise ConversionRefused(
                f"ONNX conversion: column '{name}' has the name of a tensor inside the graph",
                hint="rename the column, or set package.onnx: false",
            )
        rename_tensor(graph, graph_input.name, name)


def _no_zipmap(model: Any) -> dict[int, dict[str, Any]] | None:
    """Plain probability tensors from the final classifier (a ZipMap would give dicts)."""
    final = model.steps[-1][1] if hasattr(model, "steps") else model
    has_proba = callable(getattr(final, "predict_proba", None))  # LinearSVC has no ZipMap
    return {id(final): {"zipmap": False}} if has_proba else None


def _matrix_types(schema: FeatureSchema) -> list[tuple[str, Any]]:
    from skl2onnx.common.data_types import FloatTensorType

    return [(INPUT_NAME, FloatTensorType([None, len(schema.features)]))]


def _column_types(schema: FeatureSchema) -> list[tuple[str, Any]]:
    from skl2onnx.common.data_types import FloatTensorType, StringTensorType

    return [
        (f.name, StringTensorType([None, 1]) if f.kind == STRING else FloatTensorType([None, 1]))
        for f in schema.features
    ]


def _describe(model: Any) -> str:
    if hasattr(model, "steps"):
        return "Pipeline(" + ", ".join(type(step).__name__ for _, step in model.steps) + ")"
    return type(model).__name__


def input_layout(sess: Any) -> str:
    """``matrix`` when the graph takes the one ``input`` tensor, else ``columns``."""
    inputs = sess.get_inputs()
    return MATRIX if len(inputs) == 1 and inputs[0].name == INPUT_NAME else COLUMNS


def frame_feeds(layout: str, schema: FeatureSchema, frame: Any) -> dict[str, Any]:
    """onnxruntime feeds from a DataFrame holding the schema's columns."""
    if layout == MATRIX:
        return {INPUT_NAME: as_float32(frame[list(schema.names)])}
    feeds: dict[str, Any] = {}
    for f in schema.features:
        if f.kind == STRING:
            feeds[f.name] = string_values(frame[f.name].to_numpy()).reshape(-1, 1)
        else:
            feeds[f.name] = np.ascontiguousarray(
                frame[f.name].to_numpy(dtype=np.float32).reshape(-1, 1)
            )
    return feeds


def matrix_feeds(layout: str, schema: FeatureSchema, x: npt.NDArray[np.float32]) -> dict[str, Any]:
    """onnxruntime feeds from an all-numeric float32 matrix in schema order."""
    if layout == MATRIX:
        return {INPUT_NAME: x}
    return {name: x[:, j : j + 1] for j, name in enumerate(schema.names)}


def table_feeds(schema: FeatureSchema, table: dict[str, Any]) -> dict[str, Any]:
    """``columns``-layout feeds from 1-D columns by name: float32 numbers (NaN missing), and
    strings with ``""`` for a missing text (the contract of ``model/features.py``)."""
    feeds = {}
    for f in schema.features:
        column = table[f.name]
        if f.kind == STRING:
            feeds[f.name] = string_values(column).reshape(-1, 1) if f.nullable else column
        else:
            feeds[f.name] = np.ascontiguousarray(column, dtype=np.float32)
        feeds[f.name] = feeds[f.name].reshape(-1, 1)
    return feeds


def onnx_outputs(sess: Any, feeds: dict[str, Any], names: list[str] | None = None) -> Outputs:
    """Labels and probabilities, or values; ``names``: the session's output names, when the
    caller kept them (asking the session builds them anew on every call)."""
    names = names or [o.name for o in sess.get_outputs()]
    result = dict(zip(names, sess.run(None, feeds), strict=True))
    if "probabilities" in result:
        return Outputs(np.asarray(result["label"]), np.asarray(result["probabilities"], np.float64))
    values = np.asarray(result[names[0]], np.float64)
    return Outputs(None, values.reshape(len(values), -1))


def native_outputs(model: Any, features: Any) -> Outputs:
    """Labels (the model's own ``predict``) and probabilities of a classifier (labels alone,
    with no score columns, for one without predict_proba), or a regressor's values, one per
    row (a model answering several per row is refused: ``MultipleOutputs``). A model in the
    model runner computes them beside the model, in one call (``model_outputs``)."""
    beside = getattr(model, "model_outputs", None)
    if callable(beside):
        labels, scores = beside(features)
        return Outputs(labels, scores)
    from mlops_ci.evaluation.predictions import one_output

    who = f"the model ({type(model).__name__})"
    if is_classifier(model):
        labels = one_output(np.asarray(model.predict(features)), who)
        if not callable(getattr(model, "predict_proba", None)):
            return Outputs(labels, np.zeros((len(labels), 0)))
        # C order: some estimators (HistGradientBoosting) return a transposed view, which
        # the JSON encoder of the answer refuses
        return Outputs(labels, np.ascontiguousarray(model.predict_proba(features), np.float64))
    values = one_output(np.asarray(model.predict(features), np.float64), who)
    return Outputs(None, np.ascontiguousarray(values.reshape(len(values), 1)))


def label_probability(
    labels: npt.NDArray[Any], scores: npt.NDArray[np.float64], classes: tuple[str, ...]
) -> npt.NDArray[np.float64]:
    """The probability of each row's predicted label: its column of the probabilities, found
    by name in ``classes`` (the model's classes_, in the order of its columns, as text). A
    thresholded classifier's label is not the row's most probable class, so the row's largest
    probability is not its label's. Without classes, an integer label in range is the column
    (an ONNX graph's arg-max index); a label found nowhere gets NaN."""
    rows, width = scores.shape
    labels = np.asarray(labels)
    if labels.dtype == object:  # text from onnxruntime: fixed-width text sorts 5x faster
        labels = labels.astype(str)
    found, index = np.unique(labels, return_inverse=True)  # a few distinct labels, named once
    if classes:
        columns = {name: j for j, name in enumerate(classes)}
    else:
        columns = {str(j): j for j in range(width)}
    where = np.array([columns.get(str(name), -1) for name in found], np.intp)[index.reshape(-1)]
    where[where >= width] = -1
    out = scores[np.arange(rows), np.maximum(where, 0)] if width else np.zeros(rows)
    return np.where(where >= 0, out, np.nan)


def missing_ok(
    schema: FeatureSchema,
    frame: Any,
    native: Callable[[Any], Outputs],
    onnx: Callable[[Any], Outputs] | None,
    tolerance: Tolerance,
    rows: int = 20,
) -> tuple[str, ...]:
    """The columns the model scores when the value is missing (NaN): an imputer in the
    pipeline, or trees that route missing values. A column qualifies when, on ``rows``
    evaluation rows with it set to NaN, the native model scores every row with finite outputs
    and the ONNX model (when there is one; it gets ``""`` for a missing text) gives the same
    answers within ``tolerance`` — a graph that routes NaN another way than the native model
    does not qualify."""
    sample = frame.head(rows).reset_index(drop=True)
    strict = Tolerance(tolerance.atol, tolerance.rtol, 0.0)
    found = []
    for feature in schema.features:
        probe = sample.copy()
        if feature.kind == STRING:
            probe[feature.name] = probe[feature.name].astype(object)
        probe[feature.name] = np.nan
        try:
            said = native(probe)
            ok = bool(np.isfinite(said.scores).all())
            if ok and onnx is not None:
                ours = onnx(probe)
                ok = (
                    bool(np.isfinite(ours.scores).all()) and check_parity(said, ours, strict).passed
                )
        except Exception:  # the model refuses a missing value: the column is required
            ok = False
        if ok:
            found.append(feature.name)
    return tuple(found)


def _values_at(native: Outputs, onnx: Outputs, row: int, column: int) -> tuple[Any, Any]:
    """What the two models say for one row: the score that differs most, or the labels."""
    if native.scores.shape[1]:
        return float(native.scores[row, column]), float(onnx.scores[row, column])
    assert native.labels is not None and onnx.labels is not None
    return str(native.labels[row]), str(onnx.labels[row])


def check_parity(native: Outputs, onnx: Outputs, tolerance: Tolerance, worst: int = 5) -> Parity:
    """Rows where any output differs beyond the tolerance, or whose label differs (labels
    alone for a classifier without probabilities)."""
    if native.scores.shape[1] == 0 and native.labels is not None:
        onnx = Outputs(onnx.labels, np.zeros((len(onnx.scores), 0)))
    if native.scores.shape != onnx.scores.shape:
        raise InputError(
            f"ONNX outputs have shape {onnx.scores.shape}, the native model's {native.scores.shape}"
        )
    diff = np.abs(native.scores - onnx.scores)
    bound = tolerance.atol + tolerance.rtol * np.abs(native.scores)
    excess = (diff - bound).max(axis=1) if diff.size else np.zeros(len(diff))
    bad = excess > 0
    agreement = None
    if native.labels is not None and onnx.labels is not None:
        same = native.labels.astype(str) == onnx.labels.astype(str)
        agreement = float(same.mean()) if len(same) else 1.0
        bad |= ~same
    per_row = diff.max(axis=1) if diff.size else np.zeros(len(diff))
    where = np.argmax(diff, axis=1) if diff.size else np.zeros(len(diff), dtype=int)
    order = np.lexsort((-per_row, ~bad))[:worst]  # differing rows first, largest |Δ| first
    rel = diff / np.maximum(np.abs(native.scores), np.finfo(np.float64).tiny)
    return Parity(
        rows=len(per_row),
        max_abs_diff=float(per_row.max()) if len(per_row) else 0.0,
        max_rel_diff=float(rel.max()) if rel.size else 0.0,
        label_agreement=agreement,
        differing_rows=int(bad.sum()),
        tolerance=tolerance,
        worst_rows=tuple(
            (int(i), float(per_row[i]), *_values_at(native, onnx, int(i), int(where[i])))
            for i in order
        ),
    )
