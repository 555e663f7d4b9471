"""The evaluation metrics mlops.yaml can name, with the semantics of scikit-learn's functions.

They are computed here from confusion matrices (classification) or gathered errors
(regression), vectorised over many resamples at once, because the paired bootstrap scores
thousands of resamples; the unit tests hold every one equal to scikit-learn's value.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True)
class MetricSpec:
    name: str
    task: str  # classification | regression
    greater_is_better: bool
    sklearn: str  # the scikit-learn function (and average) with the same value


METRICS: dict[str, MetricSpec] = {
    spec.name: spec
    for spec in (
        MetricSpec("accuracy", "classification", True, "accuracy_score"),
        MetricSpec("balanced_accuracy", "classification", True, "balanced_accuracy_score"),
        MetricSpec("f1_macro", "classification", True, "f1_score(average='macro')"),
        MetricSpec("f1_weighted", "classification", True, "f1_score(average='weighted')"),
        MetricSpec("precision_macro", "classification", True, "precision_score(average='macro')"),
        MetricSpec("recall_macro", "classification", True, "recall_score(average='macro')"),
        MetricSpec("mae", "regression", False, "mean_absolute_error"),
        MetricSpec("mse", "regression", False, "mean_squared_error"),
        MetricSpec("rmse", "regression", False, "root_mean_squared_error"),
        MetricSpec("r2", "regression", True, "r2_score"),
    )
}


@dataclass(frozen=True)
class CostSpec:
    """What serving a model costs, measured by compare on this machine for both models."""

    name: str
    greater_is_better: bool
    unit: str
    meaning: str


COST_METRICS: dict[str, CostSpec] = {
    spec.name: spec
    for spec in (
        CostSpec("latency_p50_ms", False, "ms", "single-row latency, median"),
        CostSpec("latency_p95_ms", False, "ms", "single-row latency, 95th percentile"),
        CostSpec("latency_p99_ms", False, "ms", "single-row latency, 99th percentile"),
        CostSpec("rows_per_s", True, "rows/s", "throughput on batches of evaluation rows"),
        CostSpec("peak_rss_mb", False, "MiB", "peak resident memory of a scoring process"),
        CostSpec("model_size_mb", False, "MiB", "size of the model files served"),
    )
}


@dataclass(frozen=True)
class Encoded:
    """Targets and predictions of one or more models, ready for resampled scoring."""

    task: str
    y_true: npt.NDArray[Any]
    n_labels: int

    @staticmethod
    def of(
        task: str, y_true: npt.ArrayLike, *predictions: npt.ArrayLike
    ) -> tuple[Encoded, list[npt.NDArray[Any]]]:
        """Encode labels to 0..K-1 over the union of truth and all predictions."""
        truth = np.asarray(y_true)
        preds = [np.asarray(p) for p in predictions]
        if task == "regression":
            return Encoded(task, truth.astype(np.float64), 0), [p.astype(np.float64) for p in preds]
        labels, inverse = np.unique(
            np.concatenate([truth.astype(str), *[p.astype(str) for p in preds]]),
            return_inverse=True,
        )
        n = len(truth)
        parts = [inverse[i * n : (i + 1) * n].astype(np.int64) for i in range(len(preds) + 1)]
        return Encoded(task, parts[0], len(labels)), parts[1:]


def score(name: str, enc: Encoded, pred: npt.NDArray[Any]) -> float:
    """The metric on all rows, once."""
    idx = np.arange(len(enc.y_true), dtype=np.int64)[None, :]
    return float(score_resamples(name, enc, pred, idx)[0])


def score_rows(name: str, enc: Encoded, pred: npt.NDArray[Any], rows: IntArray) -> float:
    """The metric on the rows ``rows`` (row positions) only: a slice of the data."""
    return float(score_resamples(name, enc, pred, rows.astype(np.int64)[None, :])[0])


def score_resamples(name: str, enc: Encoded, pred: npt.NDArray[Any], idx: IntArray) -> FloatArray:
    """The metric on each row of ``idx`` (shape resamples x rows of row indices)."""
    spec = METRICS[name]
    if spec.task == "regression":
        return _regression(name, enc.y_true[idx].astype(np.float64), pred[idx].astype(np.float64))
    return _classification(name, _confusion(enc, pred, idx))


def _confusion(enc: Encoded, pred: npt.NDArray[Any], idx: IntArray) -> FloatArray:
    k = max(enc.n_labels, 1)
    cell = enc.y_true.astype(np.int64) * k + pred.astype(np.int64)
    b = idx.shape[0]
    flat = (np.arange(b, dtype=np.int64)[:, None] * (k * k) + cell[idx]).ravel()
    counts = np.bincount(flat, minlength=b * k * k).astype(np.float64)
    return counts.reshape(b, k, k)


def _safe_div(num: FloatArray, den: FloatArray) -> FloatArray:
    """num/den with 0 where den is 0 (scikit-learn's zero_division result)."""
    out = np.zeros_like(num)
    np.divide(num, den, out=out, where=den != 0)
    return out


def _masked_mean(values: FloatArray, mask: npt.NDArray[np.bool_]) -> FloatArray:
    return _safe_div((values * mask).sum(axis=1), mask.sum(axis=1).astype(np.float64))


def _classification(name: str, cm: FloatArray) -> FloatArray:
    diag = np.diagonal(cm, axis1=1, axis2=2)
    support = cm.sum(axis=2)  # true count per class
    predicted = cm.sum(axis=1)  # predicted count per class
    present = (support + predicted) > 0  # labels scikit-learn sees in this sample
    total = support.sum(axis=1)
    if name == "accuracy":
        return _safe_div(diag.sum(axis=1), total)
    recall = _safe_div(diag, support)
    if name == "balanced_accuracy":
        return _masked_mean(recall, support > 0)
    if name == "recall_macro":
        return _masked_mean(recall, present)
    if name == "precision_macro":
        return _masked_mean(_safe_div(diag, predicted), present)
    f1 = _safe_div(2 * diag, support + predicted)
    if name == "f1_macro":
        return _masked_mean(f1, present)
    if name == "f1_weighted":
        return _safe_div((f1 * support).sum(axis=1), total)
    raise KeyError(name)


def _regression(name: str, y: FloatArray, p: FloatArray) -> FloatArray:
    err = p - y
    if name == "mae":
        return np.asarray(np.abs(err).mean(axis=1), dtype=np.float64)
    mse = np.asarray((err**2).mean(axis=1), dtype=np.float64)
    if name == "mse":
        return mse
    if name == "rmse":
        return np.asarray(np.sqrt(mse), dtype=np.float64)
    if name == "r2":
        ss_tot = ((y - y.mean(axis=1, keepdims=True)) ** 2).sum(axis=1)
        ss_res = (err**2).sum(axis=1)
        return np.where(ss_tot > 0, 1 - _safe_div(ss_res, ss_tot), np.where(ss_res > 0, 0.0, 1.0))
    raise KeyError(name)
