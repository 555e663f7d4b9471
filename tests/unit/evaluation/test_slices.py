"""Slices of the evaluation rows: numbers in quantiles, text by value."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mlops_ci.evaluation.slices import MISSING, OTHER, cut


@pytest.mark.timeout(120)
def test_numeric_columns_are_cut_in_quantiles_text_ones_by_value() -> None:
    frame = pd.DataFrame(
        {
            "x": [1.0, 2, 3, 4, 5, 6, 7, 8, np.nan],
            "c": ["a", "a", "a", "b", "b", "c", "d", None, "e"],
        }
    )
    found = {(s.column, s.value): list(s.rows) for s in cut(frame, bins=4, most=3)}
    numeric = [v for c, v in found if c == "x"]
    assert len(numeric) == 5 and numeric[-1] == MISSING
    assert sum(len(found["x", v]) for v in numeric) == 9
    assert found["c", "a"] == [0, 1, 2] and found["c", "b"] == [3, 4]
    assert found["c", OTHER] == [5, 6, 8] and found["c", MISSING] == [7]
