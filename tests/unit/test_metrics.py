from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn import metrics as skm

from mlops_ci.metrics import METRICS, Encoded, score

SKLEARN = {
    "accuracy": skm.accuracy_score,
    "balanced_accuracy": skm.balanced_accuracy_score,
    "f1_macro": lambda y, p: skm.f1_score(y, p, average="macro", zero_division=0),
    "f1_weighted": lambda y, p: skm.f1_score(y, p, average="weighted", zero_division=0),
    "precision_macro": lambda y, p: skm.precision_score(y, p, average="macro", zero_division=0),
    "recall_macro": lambda y, p: skm.recall_score(y, p, average="macro", zero_division=0),
    "mae": skm.mean_absolute_error,
    "mse": skm.mean_squared_error,
    "rmse": skm.root_mean_squared_error,
    "r2": skm.r2_score,
}


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("name", sorted(METRICS))
def test_every_metric_equals_scikit_learn(name: str, seed: int) -> None:
    rng = np.random.default_rng(seed)
    if METRICS[name].task == "regression":
        y = rng.normal(size=80)
        p = y + rng.normal(scale=0.5, size=80)
    else:
        labels = np.array(["a", "b", "c", "d"])
        y = labels[rng.integers(0, 3, 80)]  # "d" only ever predicted, never true
        p = np.where(rng.random(80) < 0.6, y, labels[rng.integers(0, 4, 80)])
    enc, (pred,) = Encoded.of(METRICS[name].task, y, p)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scikit-learn warns about labels never true
        expected = SKLEARN[name](y, p)
    assert score(name, enc, pred) == pytest.approx(expected, abs=1e-12)
