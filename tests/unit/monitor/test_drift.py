"""The drift statistics: PSI, and the reservoir sample of a stream."""

from __future__ import annotations

import numpy as np
import pytest

from mlops_ci.monitor.drift import Reservoir, psi


def test_psi_and_the_reservoir() -> None:
    same = np.array([10, 20, 30])
    assert psi(same, same) == 0.0
    assert psi(np.array([50, 50]), np.array([90, 10])) == pytest.approx(
        0.4 * np.log(0.9 / 0.5) - 0.4 * np.log(0.1 / 0.5)
    )
    reservoir = Reservoir(1000, seed=0)
    for start in range(0, 100_000, 7_000):  # uneven chunks
        reservoir.add(np.arange(start, min(start + 7_000, 100_000), dtype=np.float64))
    assert len(reservoir.values) == 1000 and reservoir.seen == 100_000
    assert abs(reservoir.values.mean() - 50_000) < 3_000  # uniform over the stream


@pytest.mark.timeout(60)
def test_a_bool_column_counts_true_and_false_whatever_their_spelling() -> None:
    """The reference CSV reads True/False; serve's input log holds the parsed 1.0/0.0."""
    import pandas as pd

    from mlops_ci.monitor.drift import CategoricalFeature

    feature = CategoricalFeature("flag")
    feature.scan_reference(pd.Series([True, False, True, None], dtype=object))
    feature.add_current(pd.Series([1.0, 0.0, 1.0, float("nan")]))
    assert feature.reference == feature.current == {"True": 2, "False": 1}
    assert feature.missing == [1, 1] and feature.psi() == 0.0
    text = CategoricalFeature("colour")  # a text column keeps its words
    text.scan_reference(pd.Series(["1", "0"]))
    assert text.boolean is False and text.reference == {"1": 1, "0": 1}
