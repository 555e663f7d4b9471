"""The input log of a real `mlops-ci serve` on a disk that fills and empties again.

A full disk without root: RLIMIT_FSIZE, lowered on the running server (``prlimit``) to just
past its segment, so the kernel writes part of a batch and then fails (EFBIG; CPython ignores
SIGXFSZ), and raised again when "space comes back". The server answers every request; the
segment it finishes at shutdown holds whole lines only, every row of every request it wrote,
and /metrics and /v2/health/ready count exactly the rows it could not write.
"""

from __future__ import annotations

import resource
import signal
import time
from pathlib import Path

import httpx
import orjson
import pytest

from tests.integration.conftest import Packaged
from tests.integration.test_serve import project_with, rows
from tests.support.serve_helpers import serving

pytestmark = pytest.mark.slow
ROWS = 30  # a request: about 7 KB of log lines


def score(url: str, request_id: str, x: list[list[float]]) -> None:
    answer = httpx.post(f"{url}/score", json={"inputs": x}, headers={"x-request-id": request_id})
    assert answer.status_code == 200, answer.text


def log_state(url: str) -> dict[str, object]:
    body = httpx.get(f"{url}/v2/health/ready").json()
    assert body["ready"] is True
    state: dict[str, object] = body["input_log"]
    return state


def until(url: str, state: str, written: int | None = None) -> dict[str, object]:
    """The input log's detail once it is in ``state`` (with ``written`` rows written)."""
    deadline = time.monotonic() + 10
    while True:
        seen = log_state(url)
        if seen["state"] == state and written in (None, seen["rows_written"]):
            return seen
        assert time.monotonic() < deadline, seen
        time.sleep(0.05)


@pytest.mark.timeout(300)  # the session's packaged models may be built first
def test_a_full_disk_costs_the_rows_it_could_not_write_and_no_line(
    packaged: Packaged, tmp_path: Path
) -> None:
    project = project_with(packaged, tmp_path, "monitor: {collect: true, flush_seconds: 0.05}")
    x = rows(packaged, ROWS)
    folder = project / ".mlops" / "inputs"
    args = ("--model-dir", str(packaged.v1), "-c", str(project))
    with serving(*args, cwd=project) as srv:
        pid = srv.process.pid
        for i in range(3):
            score(srv.url, f"before-{i}", x)
        until(srv.url, "ok", written=3 * ROWS)
        (segment,) = folder.glob("*.jsonl.open")
        room = segment.stat().st_size + 10_000  # one more request fits, the next one half
        resource.prlimit(pid, resource.RLIMIT_FSIZE, (room, resource.RLIM_INFINITY))
        try:
            for i in range(6):
                score(srv.url, f"full-{i}", x)
                time.sleep(0.15)  # a batch a request: the second one is torn by the kernel
            failing = until(srv.url, "failing")
        finally:
            unlimited = resource.RLIM_INFINITY
            resource.prlimit(pid, resource.RLIMIT_FSIZE, (unlimited, unlimited))
        assert "File too large" in str(failing["last_error"])
        for i in range(2):
            score(srv.url, f"after-{i}", x)
        written = failing["rows_written"]
        assert isinstance(written, int)
        recovered = until(srv.url, "ok", written=written + 2 * ROWS)
        metrics = httpx.get(f"{srv.url}/metrics").text
        assert srv.stop() in (0, -signal.SIGTERM)
    dropped = recovered["rows_dropped"]
    assert isinstance(dropped, int) and dropped >= ROWS  # a whole request at least
    assert f'mlops_input_log_dropped_rows_total{{model="iris-classifier"}} {dropped}.0' in metrics
    assert not list(folder.glob("*.open")), "shutdown finished the segment"
    (finished,) = folder.glob("*.jsonl")
    data = finished.read_bytes()
    assert data.endswith(b"\n")
    records = [orjson.loads(line) for line in data.splitlines()]  # every line parses
    by_request: dict[str, int] = {}
    for record in records:
        by_request[record["request_id"]] = by_request.get(record["request_id"], 0) + 1
    assert set(by_request.values()) == {ROWS}, by_request  # a request's rows: all or none
    assert {f"before-{i}" for i in range(3)} | {"after-0", "after-1"} <= set(by_request)
    assert "full-0" in by_request  # it fitted
    assert len(records) + dropped == 11 * ROWS  # written and counted: every row sent
    said = srv.log()
    assert said.count("input log: cannot write") == 1 and said.count("writing again") == 1
