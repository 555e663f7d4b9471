"""What a worker holds: each version's exactness probe sized by the batches it will take."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from mlops_ci.config.types import Batching
from mlops_ci.serve import service as held
from mlops_ci.serve.service import Service
from tests.unit.serve.test_app import two_versions


@pytest.mark.timeout(60)
def test_each_version_is_probed_up_to_max_batch_size_and_served_unbatched_where_bits_differ(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked: list[int | None] = []

    def calibrate(model: Any, limits: Any, max_batch_size: int | None = None) -> str | None:
        asked.append(max_batch_size)
        return "other bits in a batch of 8 rows" if model.spec.version == "2" else None

    monkeypatch.setattr(held, "calibrate", calibrate)
    service = Service(two_versions(tmp_path / "on", Batching(8, 0.0), logged=False))
    assert asked == [8, 8] and set(service.batchers) == {"1"}
    assert service.unbatched == {"2": "other bits in a batch of 8 rows"}
    Service(two_versions(tmp_path / "off", None, logged=False))
    assert asked[2:] == [None, None]  # batching off: probed for the lone-row pairing only
