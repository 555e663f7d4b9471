"""v2 bodies built from what a worker holds: server readiness with the input log's state."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

from mlops_ci.serve.inputlog import InputLog, LogSettings
from mlops_ci.serve.service import Service
from mlops_ci.serve.v2 import server_readiness


def test_ready_stays_true_and_says_what_the_input_log_could_not_write(tmp_path: Path) -> None:
    """KServe's client reads ``ready`` of a 200 (and Triton's only the 200): the body keeps it
    true, the input log's state beside it."""
    assert server_readiness(cast(Service, SimpleNamespace(input_log=None))) == {"ready": True}
    log = InputLog(LogSettings(tmp_path, "m", ("a",)))
    log._dropped(600, OSError(28, "No space left on device"))  # what a failed write records
    body: dict[str, Any] = server_readiness(cast(Service, SimpleNamespace(input_log=log)))
    assert body["ready"] is True
    state = body["input_log"]
    assert state["state"] == "failing" and state["rows_dropped"] == 600
    assert state["last_error"] == "OSError: [Errno 28] No space left on device"
