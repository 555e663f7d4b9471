"""Drift of a free-text column: compared by what two samples of text share, not as categories.

Two texts from the same source are almost never equal, so counting each as a category (as
``drift.CategoricalFeature`` does) flags any fresh sample: thousands of categories, each seen
once on one side. A text column is compared instead by

- its length: characters per present text, on the reference's quantile bins (PSI, every row)
  and a Kolmogorov–Smirnov test on reservoir samples (``drift.NumericFeature``);
- its words: tokens (``\\w+``, lower case) hashed into ``BUCKETS`` fixed buckets, the PSI of
  every token's bucket, and a chi-squared test on one token drawn at random per text (tokens of
  one text are not independent draws; one per text is);
- its empty/missing share (an empty text is a missing text, as ``model/features.py`` says),
  PSI and chi-squared on the two counts.

Its PSI is the largest of the three, its p-value the smallest times three (Bonferroni), so a
text drifts when its lengths, its words or its gaps changed. Memory is fixed: the length
sketches, the bucket counts and a bitmap of the reference's hashed vocabulary (the share of
current tokens never seen there is said, not judged).

Which columns are text: the input contract (``model/features.py``) gives the kind — a number,
text, a bool or a category; it has no kind of its own for free text, so :func:`is_free_text`
takes a text column as free text when the reference's first rows hold many different values
(a text column of a few values, e.g. ``small``/``large``, stays a category).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pandas as pd

from mlops_ci.model.features import STRING
from mlops_ci.monitor.drift import NumericFeature, chi2, counts_psi

TEST = "length+tokens"
BUCKETS = 64  # token buckets: few enough for a few hundred texts, enough to tell vocabularies
VOCABULARY_BITS = 20  # the reference's hashed vocabulary: a bitmap of 2**20 slots (1 MiB)
MIN_DISTINCT = 20  # free text: at least this many different values in the first rows ...
MIN_DISTINCT_SHARE = 0.5  # ... and at least this share of the present values different
_TOKEN = r"\w+"


def is_free_text(kind: str, column: pd.Series) -> bool:
    """A column of the contract's kind ``kind`` compared as free text: text (``string``) with
    at least ``MIN_DISTINCT`` different values, more than ``MIN_DISTINCT_SHARE`` of its present
    values (``column``: the reference's first rows)."""
    if kind != STRING:
        return False
    present = _present(column)
    distinct = present.nunique()
    return bool(distinct >= MIN_DISTINCT and distinct >= MIN_DISTINCT_SHARE * len(present))


class TextFeature:
    """A free-text column's sketches on both sides (see the module)."""

    def __init__(self, name: str, bins: int, sample_size: int, seed: int) -> None:
        self.name = name
        self.length = NumericFeature(name, bins, sample_size, seed)  # characters, present texts
        self.tokens = [np.zeros(BUCKETS, np.int64), np.zeros(BUCKETS, np.int64)]
        self.drawn = [np.zeros(BUCKETS, np.int64), np.zeros(BUCKETS, np.int64)]  # one per text
        self.rows = [0, 0]
        self.missing = [0, 0]
        self.vocabulary = np.zeros(1 << VOCABULARY_BITS, dtype=np.bool_)
        self.unseen = 0  # current tokens whose hash the reference's vocabulary lacks
        self._rng = np.random.default_rng(seed + 1_000_003)

    # reference, pass 1: lengths' range and sample, tokens, vocabulary
    def scan_reference(self, column: pd.Series) -> None:
        texts = self._count_rows(column, 0)
        self.length.scan_reference(_lengths(texts))
        hashes = self._tokens(texts, 0)
        self.vocabulary[hashes >> np.uint64(64 - VOCABULARY_BITS)] = True

    def freeze(self) -> None:
        self.length.freeze()

    # reference, pass 2: the lengths' histogram
    def count_reference(self, column: pd.Series) -> None:
        self.length.count_reference(_lengths(_present(column)))

    def add_current(self, column: pd.Series) -> None:
        texts = self._count_rows(column, 1)
        self.length.add_current(_lengths(texts))
        hashes = self._tokens(texts, 1)
        self.unseen += int((~self.vocabulary[hashes >> np.uint64(64 - VOCABULARY_BITS)]).sum())

    def _count_rows(self, column: pd.Series, side: int) -> pd.Series:
        texts = _present(column)
        self.rows[side] += len(column)
        self.missing[side] += len(column) - len(texts)
        return texts

    def _tokens(self, texts: pd.Series, side: int) -> npt.NDArray[np.uint64]:
        """Counts the tokens' buckets (all, and one drawn per text); the tokens' hashes."""
        words = texts.str.lower().str.findall(_TOKEN)
        counts = words.str.len().to_numpy(dtype=np.int64)
        flat = [w for ws in words.tolist() for w in ws]
        if not flat:
            return np.zeros(0, dtype=np.uint64)
        hashes = pd.util.hash_array(np.array(flat, dtype=object))
        buckets = (hashes % np.uint64(BUCKETS)).astype(np.int64)
        self.tokens[side] += np.bincount(buckets, minlength=BUCKETS)
        some = counts[counts > 0]
        starts = np.cumsum(some) - some
        picks = starts + (self._rng.random(len(some)) * some).astype(np.int64)
        self.drawn[side] += np.bincount(buckets[picks], minlength=BUCKETS)
        return np.asarray(hashes, dtype=np.uint64)

    def _gaps(self) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        ref = np.array([self.rows[0] - self.missing[0], self.missing[0]], dtype=np.int64)
        cur = np.array([self.rows[1] - self.missing[1], self.missing[1]], dtype=np.int64)
        return ref, cur

    def parts(self) -> dict[str, float]:
        """The PSI of each comparison: length, tokens, missing (0 where a side has nothing)."""
        ref_gaps, cur_gaps = self._gaps()
        return {
            "length": self.length.psi(),
            "tokens": counts_psi(self.tokens[0], self.tokens[1]),
            "missing": counts_psi(ref_gaps, cur_gaps),
        }

    def psi(self) -> float:
        return max(self.parts().values())

    def tests(self) -> dict[str, float | None]:
        """The p-value of each comparison: KS of lengths, chi-squared of the drawn tokens'
        buckets and of the missing counts (None where it cannot be computed)."""
        ref_gaps, cur_gaps = self._gaps()
        return {
            "length": self.length.test()[1],
            "tokens": chi2(self.drawn[0], self.drawn[1]),
            "missing": chi2(ref_gaps, cur_gaps),
        }

    def test(self) -> tuple[str, float | None]:
        found = [p for p in self.tests().values() if p is not None]
        return TEST, (min(1.0, len(found) * min(found)) if found else None)

    @property
    def unseen_share(self) -> float:
        return self.unseen / max(int(self.tokens[1].sum()), 1)

    def note(self) -> str:
        """How the column was compared, in one line, with each comparison's figures."""
        parts, tests = self.parts(), self.tests()

        def p(name: str) -> str:
            value = tests[name]
            return "n/a" if value is None else f"{value:.3g}"

        return (
            f"compared as free text: length in characters PSI {parts['length']:.3f} "
            f"(KS p {p('length')}); tokens hashed into {BUCKETS} buckets PSI "
            f"{parts['tokens']:.3f} (chi-squared p {p('tokens')}, one token per text); "
            f"empty or missing PSI {parts['missing']:.3f} (chi-squared p {p('missing')}); "
            f"{self.unseen_share:.1%} of current tokens never seen in the reference"
        )


def _present(column: pd.Series) -> pd.Series:
    """The present texts as strings: not None/NaN, not empty (a missing text)."""
    texts = column.dropna()
    texts = texts.astype(str) if texts.dtype != object else texts.map(str)
    return texts[texts != ""]


def _lengths(texts: pd.Series) -> pd.Series:
    return texts.str.len().astype(np.float64)
