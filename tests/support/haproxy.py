"""The docker front's HAProxy settings the HAProxy tests share."""

from __future__ import annotations

from pathlib import Path

from mlops_ci.serve.front import FORWARDED
from mlops_ci.serve.haproxy import (
    FrontSpec,
)


def spec(tmp_path: Path) -> FrontSpec:
    return FrontSpec(
        "127.0.0.1", 18080, 18081, 15514, str(tmp_path / "admin.sock"),
        str(tmp_path / "pins.map"), FORWARDED, 1000, 30.0, 60.0,
    )  # fmt: skip
