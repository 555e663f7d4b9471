"""Free text compared by its lengths, hashed words and gaps: a fresh sample of the same
generator does not drift, text with other words, other lengths or more gaps does."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mlops_ci.model.features import CATEGORY, NUMBER, STRING
from mlops_ci.monitor.text import BUCKETS, TextFeature, is_free_text


def texts(rows: int, seed: int, vocabulary: int = 1, words: int = 12) -> pd.Series:
    """``rows`` texts of about ``words`` words drawn (Zipf) from a vocabulary of 3000 made-up
    words; ``vocabulary`` seeds which words those are."""
    made = np.random.default_rng(vocabulary)
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    vocab = np.array(["".join(made.choice(letters, made.integers(2, 10))) for _ in range(3000)])
    weights = 1 / np.arange(1, len(vocab) + 1)
    rng = np.random.default_rng(seed)
    counts = np.maximum(rng.poisson(words, rows), 1)
    drawn = rng.choice(vocab, counts.sum(), p=weights / weights.sum())
    cuts = np.cumsum(counts)[:-1]
    return pd.Series([" ".join(part) for part in np.split(drawn, cuts)], dtype=object)


def compared(reference: pd.Series, current: pd.Series, seed: int = 0) -> TextFeature:
    feature = TextFeature("review", bins=10, sample_size=2000, seed=seed)
    for start in range(0, len(reference), 700):  # in chunks, as drift reads them
        feature.scan_reference(reference.iloc[start : start + 700])
    feature.freeze()
    for start in range(0, len(reference), 700):
        feature.count_reference(reference.iloc[start : start + 700])
    for start in range(0, len(current), 700):
        feature.add_current(current.iloc[start : start + 700])
    return feature


def p_value(feature: TextFeature) -> float:
    found = feature.test()[1]
    assert found is not None
    return found


def test_which_text_columns_are_free_text() -> None:
    assert is_free_text(STRING, texts(200, 0))
    sizes = pd.Series(["small", "mid", "large"] * 70)  # text of a few values: a category
    assert not is_free_text(STRING, sizes)
    assert not is_free_text(CATEGORY, texts(200, 0)) and not is_free_text(NUMBER, texts(200, 0))
    assert not is_free_text(STRING, pd.Series([f"v{i % 30}" for i in range(200)]))  # 15% new
    assert not is_free_text(STRING, pd.Series(["a", None, ""] * 10))


@pytest.mark.timeout(120)
def test_same_generator_text_does_not_drift_over_20_samples() -> None:
    reference = texts(3000, seed=1)
    worst_psi, lowest_p = 0.0, 1.0
    for seed in range(2, 22):
        feature = compared(reference, texts(1000, seed=seed), seed)
        worst_psi = max(worst_psi, feature.psi())
        lowest_p = min(lowest_p, p_value(feature))
    print(f"same generator: largest PSI {worst_psi:.3f}, smallest p {lowest_p:.3g}")
    assert worst_psi < 0.1 and lowest_p > 1e-4
    feature = compared(reference, texts(1000, seed=2))
    assert feature.test()[0] == "length+tokens" and feature.rows == [3000, 1000]
    assert int(feature.tokens[0].sum()) > 30_000 and len(feature.tokens[0]) == BUCKETS
    assert "tokens hashed into 64 buckets" in feature.note()


@pytest.mark.timeout(120)
def test_other_words_other_lengths_or_more_gaps_drift() -> None:
    reference = texts(3000, seed=1)
    words = compared(reference, texts(1000, seed=2, vocabulary=9))
    assert words.parts()["tokens"] > 0.5 and words.parts()["length"] < 0.1
    assert p_value(words) < 1e-6 and words.unseen_share > 0.9
    longer = compared(reference, texts(1000, seed=3, words=30))
    assert longer.parts()["length"] > 1.0 and longer.parts()["tokens"] < 0.1
    assert longer.length.current.minimum > 0 and p_value(longer) < 1e-6
    gappy = texts(1000, seed=4).to_numpy().copy()
    gappy[:300] = None
    gappy[300:350] = ""  # an empty text is a missing text
    gaps = compared(reference, pd.Series(gappy))
    assert gaps.missing == [0, 350] and gaps.parts()["missing"] > 0.2
    assert gaps.psi() == gaps.parts()["missing"]
