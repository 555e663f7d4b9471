"""Streaming drift statistics of one feature: bounded memory whatever the number of rows.

Per numeric feature: row, missing and out-of-range counts, min/max, a histogram on the
reference's quantile bins (exact, over every row) for the population stability index, and a
uniform reservoir sample (``sample_size`` rows) for the Kolmogorov–Smirnov test. Per categorical
feature: counts per category (at most ``MAX_CATEGORIES``, the rest as one "other") for PSI and
the chi-squared test; a bool column of the reference counts True and False whatever spelling
the current side has (the input log holds 1.0/0.0, a CSV True/False: ``model/values.py``).
The reference is read twice: once for its quantiles, once to count (values computed on the
first pass, such as a model's predictions, wait in a temporary file: :class:`Spill`). Free
text has its own sketches: ``monitor/text.py``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO

import numpy as np
import numpy.typing as npt
import pandas as pd

from mlops_ci.model.values import bool_value

MAX_CATEGORIES = 1000
OTHER = "__other__"
EPSILON = 1e-4  # floor of a bin's share in PSI, so an empty bin does not give infinity


class Reservoir:
    """A uniform sample of at most ``size`` values from a stream (Algorithm R, vectorised)."""

    def __init__(self, size: int, seed: int) -> None:
        self.size = size
        self.seen = 0
        self.values = np.empty(0, dtype=np.float64)
        self._rng = np.random.default_rng(seed)

    def add(self, values: npt.NDArray[np.float64]) -> None:
        room = self.size - len(self.values)
        if room > 0:
            self.values = np.concatenate([self.values, values[:room]])
            self.seen += min(room, len(values))
            values = values[room:]
        if not len(values):
            return
        positions = self.seen + np.arange(1, len(values) + 1)  # 1-based index of each value
        slots = (self._rng.random(len(values)) * positions).astype(np.int64)
        keep = slots < self.size
        self.values[slots[keep]] = values[keep]  # in stream order: a later value wins a slot
        self.seen += len(values)


@dataclass
class NumericSide:
    rows: int = 0
    missing: int = 0
    minimum: float = float("inf")
    maximum: float = float("-inf")
    outside: int = 0  # rows outside the reference's [min, max] (current side)
    counts: npt.NDArray[np.int64] | None = None


class NumericFeature:
    def __init__(self, name: str, bins: int, sample_size: int, seed: int) -> None:
        self.name = name
        self.bins = bins
        self.reference = NumericSide()
        self.current = NumericSide()
        self.ref_sample = Reservoir(sample_size, seed)
        self.cur_sample = Reservoir(sample_size, seed + 1)
        self.edges: npt.NDArray[np.float64] | None = None

    # reference, pass 1: range, missing, sample → quantile edges
    def scan_reference(self, column: pd.Series) -> None:
        values, missing = _numbers(column)
        _observe(self.reference, values, missing)
        self.ref_sample.add(values)

    def freeze(self) -> None:
        sample = self.ref_sample.values
        if not len(sample):
            self.edges = np.array([-np.inf, np.inf])
            return
        inner = np.unique(np.quantile(sample, np.linspace(0, 1, self.bins + 1)[1:-1]))
        self.edges = np.concatenate([[-np.inf], inner, [np.inf]])
        self.reference.counts = np.zeros(len(self.edges) - 1, dtype=np.int64)
        self.current.counts = np.zeros(len(self.edges) - 1, dtype=np.int64)

    # reference, pass 2: histogram
    def count_reference(self, column: pd.Series) -> None:
        values, _ = _numbers(column)
        self._count(self.reference, values)

    def add_current(self, column: pd.Series) -> None:
        values, missing = _numbers(column)
        _observe(self.current, values, missing)
        self.current.outside += int(
            ((values < self.reference.minimum) | (values > self.reference.maximum)).sum()
        )
        self._count(self.current, values)
        self.cur_sample.add(values)

    def _count(self, side: NumericSide, values: npt.NDArray[np.float64]) -> None:
        assert self.edges is not None and side.counts is not None
        index = np.searchsorted(self.edges, values, side="right") - 1
        side.counts += np.bincount(
            np.clip(index, 0, len(side.counts) - 1), minlength=len(side.counts)
        )

    def psi(self) -> float:
        if self.reference.counts is None or self.current.counts is None:
            return 0.0
        return psi(self.reference.counts, self.current.counts)

    def test(self) -> tuple[str, float | None]:
        from scipy.stats import ks_2samp

        a, b = self.ref_sample.values, self.cur_sample.values
        if len(a) < 2 or len(b) < 2:
            return "ks", None
        return "ks", float(ks_2samp(a, b).pvalue)


class CategoricalFeature:
    def __init__(self, name: str) -> None:
        self.name = name
        self.reference: dict[str, int] = {}
        self.current: dict[str, int] = {}
        self.missing = [0, 0]
        self.rows = [0, 0]
        self.boolean: bool | None = None  # a bool column: decided by the reference's first chunk

    def scan_reference(self, column: pd.Series) -> None:
        if self.boolean is None:
            present = column.dropna()
            self.boolean = pd.api.types.is_bool_dtype(column) or (
                not present.empty and all(isinstance(v, bool) for v in present.tolist())
            )
        self._add(column, self.reference, 0)

    def add_current(self, column: pd.Series) -> None:
        self._add(column, self.current, 1)

    def _add(self, column: pd.Series, into: dict[str, int], side: int) -> None:
        if self.boolean:
            column = _bool_keys(column)
        self.rows[side] += len(column)
        self.missing[side] += int(column.isna().sum())
        for value, count in column.dropna().astype(str).value_counts().items():
            key = str(value)
            if key not in into and len(into) >= MAX_CATEGORIES:
                key = OTHER
            into[key] = into.get(key, 0) + int(count)

    def aligned(self) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], list[str]]:
        names = sorted(set(self.reference) | set(self.current))
        ref = np.array([self.reference.get(n, 0) for n in names], dtype=np.int64)
        cur = np.array([self.current.get(n, 0) for n in names], dtype=np.int64)
        return ref, cur, names

    def psi(self) -> float:
        ref, cur, _ = self.aligned()
        return counts_psi(ref, cur)

    def test(self) -> tuple[str, float | None]:
        ref, cur, _ = self.aligned()
        return "chi2", chi2(ref, cur)


def counts_psi(reference: npt.NDArray[Any], current: npt.NDArray[Any]) -> float:
    """:func:`psi` of two count vectors, 0 where either side counted nothing."""
    return psi(reference, current) if reference.sum() and current.sum() else 0.0


def chi2(reference: npt.NDArray[np.int64], current: npt.NDArray[np.int64]) -> float | None:
    """The chi-squared test's p-value of two count vectors over the same bins (bins empty on
    both sides left out); None with fewer than two bins or an empty side."""
    from scipy.stats import chi2_contingency

    used = (reference + current) > 0
    if used.sum() < 2 or not reference.sum() or not current.sum():
        return None
    return float(chi2_contingency(np.vstack([reference[used], current[used]]))[1])


def _bool_keys(column: pd.Series) -> pd.Series:
    """A bool column's values as True/False (None where missing); a value the contract does
    not take as a bool stays itself, counted as a category of its own."""
    values = column.to_numpy(dtype=object, na_value=None)
    keys = []
    for value in values:
        said = bool_value(value)
        keys.append(value if said is None else None if said != said else str(said == 1.0))
    return pd.Series(keys, dtype=object)


def psi(reference: npt.NDArray[Any], current: npt.NDArray[Any]) -> float:
    """Population stability index of two count vectors over the same bins."""
    r = np.maximum(reference / max(reference.sum(), 1), EPSILON)
    c = np.maximum(current / max(current.sum(), 1), EPSILON)
    return float(np.sum((c - r) * np.log(c / r)))


def _numbers(column: pd.Series) -> tuple[npt.NDArray[np.float64], int]:
    values = pd.to_numeric(column, errors="coerce").to_numpy(dtype=np.float64)
    finite = np.isfinite(values)
    return values[finite], int((~finite).sum())


def _observe(side: NumericSide, values: npt.NDArray[np.float64], missing: int) -> None:
    side.rows += len(values) + missing
    side.missing += missing
    if len(values):
        side.minimum = min(side.minimum, float(values.min()))
        side.maximum = max(side.maximum, float(values.max()))


class Spill:
    """Numeric values written to a file (a temporary one) in chunks and read back in them:
    values the reference's first pass computes are needed again by its second (the histogram
    on the bins), held in memory by neither."""

    def __init__(self, file: BinaryIO) -> None:
        self._file = file
        self._sizes: list[int] = []

    def add(self, values: npt.NDArray[Any]) -> None:
        numbers = pd.to_numeric(pd.Series(values), errors="coerce").to_numpy(np.float64)
        self._file.write(numbers.tobytes())
        self._sizes.append(len(numbers))

    def read(self) -> Iterator[npt.NDArray[np.float64]]:
        self._file.seek(0)
        for size in self._sizes:
            yield np.frombuffer(self._file.read(size * 8), dtype=np.float64)
