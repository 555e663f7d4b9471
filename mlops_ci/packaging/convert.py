"""scikit-learn → ONNX with skl2onnx, and the parity check that the two give the same answers.

The ONNX graph takes one float32 tensor ``input`` of shape [rows, features] (features in the
evaluation data's column order) and, for classifiers, returns ``label`` and ``probabilities``
(no ZipMap, so outputs are plain tensors); regressors return ``variable``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from mlops_ci.errors import InputError

INPUT_NAME = "input"
GRAPH_LEVELS = {
    "disabled": "ORT_DISABLE_ALL",
    "basic": "ORT_ENABLE_BASIC",
    "extended": "ORT_ENABLE_EXTENDED",
    "all": "ORT_ENABLE_ALL",
}


@dataclass(frozen=True)
class Outputs:
    """What a model says for a batch: labels (classifiers) and scores (probabilities/values)."""

    labels: npt.NDArray[Any] | None
    scores: npt.NDArray[np.float64]


@dataclass(frozen=True)
class Parity:
    rows: int
    max_abs_diff: float
    label_agreement: float | None  # share of rows with the same label (classifiers)
    tolerance: float
    worst_rows: tuple[tuple[int, float], ...]  # (row, |difference|), largest first

    @property
    def passed(self) -> bool:
        labels_ok = self.label_agreement is None or 1 - self.label_agreement <= self.tolerance
        return self.max_abs_diff <= self.tolerance and labels_ok


def as_float32(features: Any) -> npt.NDArray[np.float32]:
    """The evaluation features as the float32 matrix the ONNX graph takes."""
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
    return callable(getattr(model, "predict_proba", None))


def convert_sklearn(model: Any, features: Any, target_opset: int | None) -> bytes:
    """Serialized ONNX model; a failing conversion is an error naming the estimator."""
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import FloatTensorType

    x = as_float32(features)
    options = {id(model): {"zipmap": False}} if is_classifier(model) else None
    try:
        onx = to_onnx(
            model,
            initial_types=[(INPUT_NAME, FloatTensorType([None, x.shape[1]]))],
            options=options,
            target_opset=target_opset,
        )
    except Exception as err:  # skl2onnx raises many kinds for unsupported models
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise InputError(
            f"ONNX conversion of {type(model).__name__} failed: {first[:300]}",
            hint="set package.onnx: false to package the native model instead",
        ) from None
    return bytes(onx.SerializeToString())


def session(model: bytes | str, intra_op_threads: int, level: str) -> Any:
    """An onnxruntime CPU session with the configured options."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = intra_op_threads
    options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, GRAPH_LEVELS[level])
    try:
        return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    except Exception as err:  # a corrupt or hand-edited graph
        raise InputError(f"the ONNX model cannot be loaded: {str(err).splitlines()[0]}") from None


def onnx_outputs(sess: Any, x: npt.NDArray[np.float32]) -> Outputs:
    names = [o.name for o in sess.get_outputs()]
    result = dict(zip(names, sess.run(None, {INPUT_NAME: x}), strict=True))
    if "probabilities" in result:
        return Outputs(np.asarray(result["label"]), np.asarray(result["probabilities"], np.float64))
    values = np.asarray(result[names[0]], np.float64)
    return Outputs(None, values.reshape(len(x), -1))


def native_outputs(model: Any, features: Any) -> Outputs:
    if is_classifier(model):
        return Outputs(
            np.asarray(model.predict(features)),
            np.asarray(model.predict_proba(features), np.float64),
        )
    values = np.asarray(model.predict(features), np.float64)
    return Outputs(None, values.reshape(len(values), -1))


def check_parity(native: Outputs, onnx: Outputs, tolerance: float, worst: int = 5) -> Parity:
    """Largest |native - onnx| per row and label agreement on the same rows."""
    if native.scores.shape != onnx.scores.shape:
        raise InputError(
            f"ONNX outputs have shape {onnx.scores.shape}, the native model's {native.scores.shape}"
        )
    per_row = np.abs(native.scores - onnx.scores).max(axis=1)
    order = np.argsort(-per_row, kind="stable")[:worst]
    agreement = None
    if native.labels is not None and onnx.labels is not None:
        agreement = float((native.labels.astype(str) == onnx.labels.astype(str)).mean())
    return Parity(
        rows=len(per_row),
        max_abs_diff=float(per_row.max()) if len(per_row) else 0.0,
        label_agreement=agreement,
        tolerance=tolerance,
        worst_rows=tuple((int(i), float(per_row[i])) for i in order),
    )
