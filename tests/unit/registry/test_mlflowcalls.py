"""How the MLflow adapter calls MLflow: whatever fails under it (MLflow, requests, urllib3, the
OS) is one ServiceError line (exit 3) naming the server, a call that hangs is given up at its
deadline, and "does not exist" is an answer, not a failure."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import requests
import urllib3.exceptions
from mlflow.exceptions import MlflowException

from mlops_ci.errors import InputError, ServiceError
from mlops_ci.registry import mlflowcalls
from mlops_ci.registry.mlflow import MlflowRegistry
from tests.support.store import seed_store


def local(tmp_path: Path) -> MlflowRegistry:
    return MlflowRegistry(f"sqlite:///{seed_store(tmp_path / 'm.db')}", str(tmp_path / "a"))


@pytest.mark.parametrize(
    "error",
    [
        requests.ConnectionError("HTTPConnectionPool: Max retries exceeded (Connection refused)"),
        requests.exceptions.ChunkedEncodingError("Connection broken: IncompleteRead"),
        urllib3.exceptions.ProtocolError("Connection aborted."),
        OSError(28, "No space left on device"),
        MlflowException("INTERNAL_ERROR: the store failed"),
    ],
)
def test_every_failure_under_mlflow_is_one_service_error_line(
    tmp_path: Path, error: BaseException
) -> None:
    registry = local(tmp_path)

    def failing() -> None:
        raise error

    with pytest.raises(ServiceError) as caught:
        registry._call(failing)
    said = str(caught.value)
    assert caught.value.exit_code == 3 and "\n" not in said
    assert said.startswith(f"MLflow at {registry.describe()} failed: "), said


def test_an_error_of_mlops_ci_passes_as_it_is_and_not_found_is_an_answer(tmp_path: Path) -> None:
    registry = local(tmp_path)

    def refusing() -> None:
        raise InputError("evaluate.data: the trained model cannot score its rows")

    with pytest.raises(InputError, match="cannot score"):
        registry._transfer(refusing)
    assert registry.get_version_by_alias("iris", "production") is None
    assert not registry.has_model("iris")
    with pytest.raises(InputError, match="run '0+' not found in sqlite:///"):
        registry.get_run("0" * 32)


def test_a_call_that_hangs_is_given_up_at_its_deadline(monkeypatch: pytest.MonkeyPatch) -> None:
    """MLFLOW_HTTP_REQUEST_TIMEOUT plus a margin, whatever MLflow's own retries would take."""
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "0.2")
    monkeypatch.setattr(mlflowcalls, "DEADLINE_MARGIN_S", 0.1)
    registry = MlflowRegistry("http://127.0.0.1:9", "/tmp/a")
    release = threading.Event()

    def create_run() -> None:
        release.wait(10)

    try:
        with pytest.raises(ServiceError, match=r"no usable answer to create_run within 0.3 s"):
            registry._call(create_run)
    finally:
        release.set()
