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
