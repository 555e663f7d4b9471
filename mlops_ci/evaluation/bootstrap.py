"""Paired bootstrap: is the candidate really better or worse than production on this data?

Both models are scored on the *same* resamples of the evaluation rows, so the interval is of
the difference on identical data, not of two independent scores.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from mlops_ci.metrics import METRICS, Encoded, score_resamples

# Rows x resamples scored per chunk: bounds memory to a few tens of MB whatever the data size.
_CHUNK_CELLS = 2_000_000


@dataclass(frozen=True)
class BootstrapResult:
    metric: str
    difference: float  # candidate - production on all rows
    ci_low: float
    ci_high: float
    confidence: float
    p_not_better: float  # share of resamples where the candidate is not better
    samples: int
    seed: int

    @property
    def significantly_better(self) -> bool:
        gib = METRICS[self.metric].greater_is_better
        return self.ci_low > 0 if gib else self.ci_high < 0

    @property
    def significantly_worse(self) -> bool:
        gib = METRICS[self.metric].greater_is_better
        return self.ci_high < 0 if gib else self.ci_low > 0


def paired_bootstrap(
    metric: str,
    enc: Encoded,
    candidate: npt.NDArray[Any],
    production: npt.NDArray[Any],
    samples: int,
    alpha: float,
    seed: int,
) -> BootstrapResult:
    """Percentile interval of metric(candidate) - metric(production) over paired resamples."""
    n = len(enc.y_true)
    rng = np.random.default_rng(seed)
    per_chunk = max(1, _CHUNK_CELLS // max(n, 1))
    diffs: list[npt.NDArray[np.float64]] = []
    done = 0
    while done < samples:
        b = min(per_chunk, samples - done)
        idx = rng.integers(0, n, size=(b, n), dtype=np.int64)
        diffs.append(
            score_resamples(metric, enc, candidate, idx)
            - score_resamples(metric, enc, production, idx)
        )
        done += b
    d = np.concatenate(diffs)
    full = np.arange(n, dtype=np.int64)[None, :]
    point = float(
        score_resamples(metric, enc, candidate, full)[0]
        - score_resamples(metric, enc, production, full)[0]
    )
    low, high = np.quantile(d, [alpha / 2, 1 - alpha / 2])
    better = d > 0 if METRICS[metric].greater_is_better else d < 0
    return BootstrapResult(
        metric=metric,
        difference=point,
        ci_low=float(low),
        ci_high=float(high),
        confidence=1 - alpha,
        p_not_better=float(1 - better.mean()),
        samples=samples,
        seed=seed,
    )
