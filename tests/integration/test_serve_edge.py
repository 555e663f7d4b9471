"""The network edge of a real `mlops-ci serve`: heads too large, too many or too slow, bodies
too slow, echoed values cut, and a taken port refused before anything says it listens."""

from __future__ import annotations

import json
import os
import select
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from mlops_ci.serve.protocol import MAX_HEAD_BYTES, MAX_HEADERS
from tests.integration.conftest import Packaged
from tests.support.serve_helpers import ServeProcess, free_port, serving
from tests.support.store import copy_example

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

READ_TIMEOUT_S = 2
ROW = json.dumps({"inputs": [[5.1, 3.5, 1.4, 0.2]]}).encode()


def _project(tmp_path: Path) -> Path:
    project = copy_example(tmp_path / "iris")
    config = project / "mlops.yaml"
    config.write_text(config.read_text() + f"\nserve:\n  read_timeout_s: {READ_TIMEOUT_S}\n")
    return project


@pytest.fixture
def srv(packaged: Packaged, tmp_path: Path) -> Iterator[ServeProcess]:
    """A real serve of the example's v1 with a short serve.read_timeout_s."""
    with serving("--model-dir", str(packaged.v1), "-c", str(_project(tmp_path)), cwd=tmp_path) as s:
        yield s


def _connect(srv: ServeProcess) -> socket.socket:
    where = urlsplit(srv.url)
    sock = socket.create_connection((where.hostname, where.port), timeout=15)
    return sock


def _answer(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """Status, headers and body of one response; the server closes after it."""
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), {k.lower(): v for k, v in headers.items()}, body


def _rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_heads_too_large_or_too_many_get_431_and_the_rest_is_not_read(srv: ServeProcess) -> None:
    big = b"x" * (MAX_HEAD_BYTES + 100)
    with _connect(srv) as sock:
        sock.sendall(b"POST /score HTTP/1.1\r\nHost: t\r\nX-Big: " + big + b"\r\n\r\n")
        status, headers, body = _answer(sock)
    assert status == 431 and headers["content-type"] == "application/json", body
    assert f"over {MAX_HEAD_BYTES:,} bytes" in json.loads(body)["error"]

    many = b"".join(b"X-H%d: v\r\n" % i for i in range(MAX_HEADERS + 1))
    with _connect(srv) as sock:
        sock.sendall(b"GET /v2/health/ready HTTP/1.1\r\nHost: t\r\n" + many + b"\r\n")
        status, _, body = _answer(sock)
    assert status == 431 and f"over {MAX_HEADERS} headers" in json.loads(body)["error"]

    # 20 MB in one header: the server answers and closes long before it is all sent,
    # and holds none of it.
    before = _rss_kb(srv.process.pid)
    sent, chunk = 0, b"y" * 65536
    with _connect(srv) as sock:
        sock.sendall(b"POST /score HTTP/1.1\r\nHost: t\r\nX-Huge: ")
        try:
            while sent < 20 * 1024 * 1024:
                sock.sendall(chunk)
                sent += len(chunk)
        except OSError:  # reset: the server closed the connection
            pass
    assert sent < 8 * 1024 * 1024, f"the server read {sent:,} bytes of one header"
    assert _rss_kb(srv.process.pid) - before < 4096
    assert httpx.post(f"{srv.url}/score", content=ROW).status_code == 200


def test_echoed_values_are_cut_and_access_log_lines_stay_atomic(srv: ServeProcess) -> None:
    pinned = httpx.post(f"{srv.url}/score", content=ROW, headers={"x-model-version": "v" * 20000})
    assert pinned.status_code == 404 and len(pinned.content) < 400, pinned.text
    assert "(20,000 characters)" in pinned.json()["error"]
    long_id = "r" * 8000
    done = httpx.post(f"{srv.url}/score", content=ROW, headers={"x-request-id": long_id})
    assert done.status_code == 200 and done.headers["x-request-id"] == "r" * 128
    name = "m" * 20000
    other = httpx.post(f"{srv.url}/v2/models/{name}/infer", content=b"{}")
    assert other.status_code == 404 and len(other.content) < 400
    srv.stop()
    lines = [line for line in srv.log().splitlines() if line.startswith('{"ts"')]
    assert any('"request_id":"' + "r" * 128 + '"' in line for line in lines), lines
    assert max(len(line.encode()) + 1 for line in lines) <= select.PIPE_BUF


def test_slow_heads_and_bodies_get_408_and_their_connections_close(srv: ServeProcess) -> None:
    started = time.monotonic()
    with _connect(srv) as head, _connect(srv) as body, _connect(srv) as silent:
        head.sendall(b"POST /score HTTP/1.1\r\nHost: t\r\n")  # and never the rest
        body.sendall(
            b"POST /score HTTP/1.1\r\nHost: t\r\ncontent-type: application/json\r\n"
            b"content-length: 100\r\n\r\n" + ROW[:10]
        )
        answers = [_answer(s) for s in (head, body, silent)]
    took = time.monotonic() - started
    for status, headers, content in answers:
        assert status == 408 and "error" in json.loads(content), content
        assert headers.get("connection") == "close"
    assert "serve.read_timeout_s" in json.loads(answers[1][2])["error"]
    assert took < READ_TIMEOUT_S + 8, took
    assert httpx.post(f"{srv.url}/score", content=ROW).status_code == 200
    assert "Traceback" not in srv.log()


def test_a_taken_port_is_exit_2_naming_it_and_nothing_says_listening(
    packaged: Packaged, tmp_path: Path
) -> None:
    port = free_port()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", port))
        taken.listen()
        done = subprocess.run(
            [sys.executable, "-m", "mlops_ci", "serve", "--model-dir", str(packaged.v1)]
            + ["--host", "127.0.0.1", "--port", str(port)],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            env={k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"},
            timeout=120,
        )
    assert done.returncode == 2, done.stdout + done.stderr
    assert "listening on" not in done.stdout
    assert (
        f"error: serve.port {port}: cannot listen on 127.0.0.1:{port} (address already in use)"
        in (done.stderr)
    )
    assert "Traceback" not in done.stderr
