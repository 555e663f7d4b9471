"""One way to say a gap between two models, everywhere the tool shows one.

The number is always the candidate minus production (``Δ +3068.1530``), signed; next to it the
words say which way that is for this metric (``worse by 3068.1530`` for an error that grew,
``better by 0.0120`` for an accuracy that grew). Tables, rule checks, the bootstrap row and the
slices all use these functions, so a reviewer never meets two signs for one gap.
"""

from __future__ import annotations

import math


def number(value: float) -> str:
    """A metric value as the reports print it."""
    return f"{value:.4f}"


def signed(value: float) -> str:
    return f"{value:+.4f}"


def percent(share: float) -> str:
    """A relative change (0.25) as a percentage (+25.0 %)."""
    if not math.isfinite(share):
        return "+∞ %" if share > 0 else "−∞ %"
    return f"{share * 100:+.1f} %"


def words(delta: float, greater_is_better: bool, shown: str | None = None) -> str:
    """``better by X`` / ``worse by X`` / ``no change`` for ``delta`` = candidate − production;
    ``shown`` is the size as it should read (default: |delta| to 4 decimals)."""
    if delta == 0:
        return "no change"
    size = shown if shown is not None else number(abs(delta))
    better = (delta > 0) == greater_is_better
    return f"{'better' if better else 'worse'} by {size}"


def gap(delta: float, greater_is_better: bool) -> str:
    """``Δ +3068.1530, worse by 3068.1530``: the signed gap and what it means."""
    return f"Δ {signed(delta)}, {words(delta, greater_is_better)}"


def relative(candidate: float, production: float) -> float:
    """candidate / production − 1 (a change from 0 is infinite unless there is none)."""
    if production == 0:
        return 0.0 if candidate == 0 else math.copysign(math.inf, candidate)
    return (candidate - production) / abs(production)


def relative_gap(candidate: float, production: float, greater_is_better: bool) -> str:
    """``Δ +31.0 %, worse by 31.0 %``: the relative change and what it means."""
    share = relative(candidate, production)
    size = percent(abs(share)).lstrip("+")
    return f"Δ {percent(share)}, {words(share, greater_is_better, size)}"


def cell(gap: float, greater_is_better: bool) -> str:
    """A table cell: ``+3068.1530 (worse by 3068.1530) 🔴``."""
    if gap == 0:
        return f"{signed(gap)} (no change)"
    better = (gap > 0) == greater_is_better
    return f"{signed(gap)} ({words(gap, greater_is_better)}) {'🟢' if better else '🔴'}"
