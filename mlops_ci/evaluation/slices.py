"""Slices of the evaluation rows (evaluate.slices) and both models' metrics in each.

A model better on average can be worse for one group; compare scores both models per slice
from the predictions it already has (no model is scored again), so the report can show where
the change lands and `slice: all` gate rules can refuse a candidate that loses a group.
A text column, or one of few distinct values, gives a slice per value (the largest
``slice_max``, the rest as "(other)"); a numeric one is cut into quantile bins.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from mlops_ci.metrics import Encoded, score_rows

MISSING = "(missing)"
OTHER = "(other)"


@dataclass(frozen=True)
class Slice:
    column: str
    value: str  # a category, or a bin as "[low, high]"
    rows: npt.NDArray[np.int64]  # row positions in the evaluation data


@dataclass(frozen=True)
class SliceScore:
    column: str
    value: str
    rows: int
    candidate: dict[str, float]
    production: dict[str, float] | None

    @property
    def name(self) -> str:
        return f"{self.column}={self.value}"


def cut(frame: Any, bins: int, most: int) -> list[Slice]:
    """The slices of each column of ``frame`` (a DataFrame), column by column."""
    import pandas as pd

    out: list[Slice] = []
    for column in frame.columns:
        values = frame[column]
        if values.dtype.kind in "iuf" and values.nunique(dropna=True) > bins:
            binned = pd.qcut(values, q=bins, duplicates="drop")
            names = [f"[{b.left:.4g}, {b.right:.4g}]" for b in binned.cat.categories]
            codes = binned.cat.codes.to_numpy()
            positions = np.where(
                codes >= 0, np.asarray(names, dtype=object)[codes.clip(0)], MISSING
            )
            order = names  # low to high
        else:
            labels = values.map(lambda v: MISSING if pd.isna(v) else str(v))
            order = list(labels.value_counts(sort=True).index)  # largest first
            if len(order) > most:
                labels = labels.where(labels.isin({*order[: most - 1], MISSING}), OTHER)
                order = [*order[: most - 1], OTHER]
            positions = labels.to_numpy()
        for value in dict.fromkeys([*order, MISSING]):  # bins that print alike are one slice
            rows = np.flatnonzero(positions == value).astype(np.int64)
            if len(rows):
                out.append(Slice(str(column), value, rows))
    return out


def score_slices(
    slices: list[Slice],
    metrics: tuple[str, ...],
    enc: Encoded,
    candidate: npt.NDArray[Any],
    production: npt.NDArray[Any] | None,
) -> list[SliceScore]:
    """Each metric of both models on each slice's rows."""
    return [
        SliceScore(
            s.column,
            s.value,
            len(s.rows),
            {m: score_rows(m, enc, candidate, s.rows) for m in metrics},
            None
            if production is None
            else {m: score_rows(m, enc, production, s.rows) for m in metrics},
        )
        for s in slices
    ]
