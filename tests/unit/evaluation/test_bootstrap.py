"""The paired bootstrap: exact zero for identical models, both directions, repeatable,
chunked without a change, a two-sided interval."""

from __future__ import annotations

import numpy as np
import pytest

from mlops_ci.evaluation.bootstrap import paired_bootstrap
from mlops_ci.metrics import Encoded


def _labels(seed: int, n: int, accuracy: float) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    return y, np.where(rng.random(n) < accuracy, y, (y + 1) % 3)


def test_bootstrap_of_identical_models_is_exactly_zero() -> None:
    y, p = _labels(0, 200, 0.8)
    enc, (a, b) = Encoded.of("classification", y, p, p)
    result = paired_bootstrap("f1_macro", enc, a, b, samples=500, alpha=0.05, seed=0)
    assert (result.difference, result.ci_low, result.ci_high) == (0.0, 0.0, 0.0)
    assert not result.significantly_better and not result.significantly_worse


def test_bootstrap_detects_a_real_difference_in_both_directions() -> None:
    y, good = _labels(1, 300, 0.95)
    _, bad = _labels(2, 300, 0.0)
    bad = np.where(np.random.default_rng(3).random(300) < 0.7, y, bad)  # about 70 % right
    enc, (g, b) = Encoded.of("classification", y, good, bad)
    better = paired_bootstrap("accuracy", enc, g, b, samples=1000, alpha=0.05, seed=0)
    assert better.significantly_better
    assert 0 < better.ci_low < better.difference < better.ci_high
    assert better.p_not_better == 0.0
    worse = paired_bootstrap("accuracy", enc, b, g, samples=1000, alpha=0.05, seed=0)
    assert worse.significantly_worse and not worse.significantly_better


def test_bootstrap_direction_for_error_metrics() -> None:
    rng = np.random.default_rng(4)
    y = rng.normal(size=200)
    close, far = y + rng.normal(scale=0.1, size=200), y + rng.normal(scale=1.0, size=200)
    enc, (c, f) = Encoded.of("regression", y, close, far)
    result = paired_bootstrap("mae", enc, c, f, samples=500, alpha=0.05, seed=0)
    assert result.difference < 0 and result.significantly_better


def test_bootstrap_is_repeatable_with_a_seed_and_varies_without() -> None:
    y, p = _labels(5, 100, 0.8)
    _, q = _labels(6, 100, 0.75)
    enc, (a, b) = Encoded.of("classification", y, p, q)
    first = paired_bootstrap("f1_macro", enc, a, b, samples=300, alpha=0.1, seed=7)
    again = paired_bootstrap("f1_macro", enc, a, b, samples=300, alpha=0.1, seed=7)
    other = paired_bootstrap("f1_macro", enc, a, b, samples=300, alpha=0.1, seed=8)
    assert first == again
    assert (first.ci_low, first.ci_high) != (other.ci_low, other.ci_high)


def test_bootstrap_chunks_large_data_without_changing_the_result(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import mlops_ci.evaluation.bootstrap as bootstrap

    y, p = _labels(8, 1000, 0.8)
    _, q = _labels(9, 1000, 0.8)
    enc, (a, b) = Encoded.of("classification", y, p, q)
    whole = paired_bootstrap("accuracy", enc, a, b, samples=200, alpha=0.05, seed=1)
    monkeypatch.setattr(bootstrap, "_CHUNK_CELLS", 7000)  # 7 resamples per chunk
    chunked = paired_bootstrap("accuracy", enc, a, b, samples=200, alpha=0.05, seed=1)
    # The generator fills chunks in the order it fills one big draw: every resample is the
    # same, so the result is identical, not just close (a chunk left out changes it).
    assert chunked == whole
    assert whole.p_not_better * 200 == pytest.approx(round(whole.p_not_better * 200))


def test_the_interval_is_two_sided_at_the_stated_confidence() -> None:
    """A 95 % interval leaves 2.5 % of the resampled differences on each side (quantiles at
    alpha/2 and 1 - alpha/2, not alpha: that would be a 90 % interval labelled 95 %)."""
    import mlops_ci.evaluation.bootstrap as bootstrap

    y, p = _labels(10, 400, 0.8)
    _, q = _labels(11, 400, 0.78)
    enc, (a, b) = Encoded.of("classification", y, p, q)
    result = paired_bootstrap("accuracy", enc, a, b, samples=2000, alpha=0.05, seed=3)
    rng = np.random.default_rng(3)
    idx = rng.integers(0, 400, size=(2000, 400), dtype=np.int64)
    d = bootstrap.score_resamples("accuracy", enc, a, idx) - bootstrap.score_resamples(
        "accuracy", enc, b, idx
    )
    assert np.mean(d < result.ci_low) == pytest.approx(0.025, abs=0.002)
    assert np.mean(d > result.ci_high) == pytest.approx(0.025, abs=0.002)
    assert result.confidence == 0.95
