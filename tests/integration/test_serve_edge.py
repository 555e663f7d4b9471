"""The network edge of a real `mlops-ci serve`: heads too large, too many or too slow, bodies
too slow, echoed values cut, a taken port refused before anything says it listens, bodies of any
depth or encoding answered without a 5xx, and connections kept within the open-file limit."""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import resource
import select
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from mlops_ci.serve.connections import budget
from mlops_ci.serve.protocol import MAX_HEAD_BYTES, MAX_HEADERS
from tests.integration.conftest import Packaged
from tests.support.serve_helpers import ADMIN_TOKEN, ServeProcess, free_port, serving
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


def _deep(depth: int, leaf: bytes) -> bytes:
    return b"[" * depth + leaf + b"]" * depth


BIG = b"340282346638528859811704183484516925441"  # one past float32's largest
BRACKETS = '\\"[{' * 5_000 + "\\\\"  # escaped quotes and a backslash among brackets
SCORE_BODIES = [
    *(b'{"inputs": ' + _deep(depth, BIG) + b"}" for depth in (10, 1_000, 100_000)),
    b'{"inputs": [[5.1, 3.5, 1.4, ' + BIG + b"]]}",
    b'{"inputs": [[5.1, 3.5, 1.4, 0.2]], "note": "' + BRACKETS.encode() + b'"}',
    b'{"inputs": [[5.1, 3.5, 1.4, 0.2]], "note": "\xff\xfe[[["}',  # invalid UTF-8
    b'{"inputs": [[5.1, 3.5, 1.4, 0.2]], "note": "\\ud800"}',  # a lone surrogate
    b"\xff" * 100,
]


def _tensor(data: bytes) -> bytes:
    return b'{"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP64", "data": ' + (
        data + b"}]}"
    )


INFER_BODIES = [
    *(_tensor(_deep(depth, BIG)) for depth in (10, 1_000, 100_000)),
    _tensor(b"[5.1, 3.5, 1.4, " + BIG + b"]"),
    _tensor(b'[5.1, 3.5, 1.4, 0.2], "id": "' + BRACKETS.encode() + b'"'),
    _tensor(b'[5.1, 3.5, 1.4, 0.2], "id": "\xc3\x28"'),
]


def test_no_body_gets_a_5xx_however_deep_long_or_broken(srv: ServeProcess) -> None:
    """Bodies nested 10, 1,000 and 100,000 deep holding an integer past float32, strings full
    of brackets and escapes, invalid UTF-8: a 4xx with a JSON error (or 200 where valid), on
    /score, v2 (JSON and the binary extension's header) and the admin API; never a 5xx, nor
    for a body the client cut off (it was a 500 logged with a traceback)."""
    infer = f"{srv.url}/v2/models/iris-classifier/infer"
    binary = [
        (body, {"inference-header-content-length": str(len(body))})
        for body in (_tensor(_deep(1_000, b"1")), _tensor(b"[1]").replace(b"[1]", b"[[[["))
    ]
    admin = {"authorization": f"Bearer {ADMIN_TOKEN}"}
    cases = [
        *((f"{srv.url}/score", body, {}) for body in SCORE_BODIES),
        *((infer, body, {}) for body in INFER_BODIES),
        *((infer, body + b"\0" * 32, headers) for body, headers in binary),
        (f"{srv.url}/admin/traffic", b'{"weights": ' + _deep(100_000, b"1") + b"}", admin),
    ]
    answers = []
    with httpx.Client(timeout=20) as client:
        for url, body, headers in cases:
            method = "PUT" if "admin" in url else "POST"
            got = client.request(method, url, content=body, headers=headers)
            answers.append((url.rsplit("/", 1)[-1], len(body), got.status_code, got.json()))
    for where, size, status, doc in answers:
        assert status == 200 or (400 <= status < 500 and doc["error"]), (where, size, doc)
    statuses = [status for *_, status, _ in answers]
    deep = [status for _, size, status, _ in answers if size > 1_000]
    assert statuses.count(200) == 2 and 400 in deep, answers  # the valid bodies, answered
    refusals = " ".join(doc.get("error", "") for *_, doc in answers)
    assert "nested deeper than 32 levels" in refusals and "beyond the float32 range" in refusals
    with _connect(srv) as gone:  # a body cut off by the client: nobody to answer, no 5xx
        gone.sendall(b"POST /score HTTP/1.1\r\nHost: t\r\ncontent-length: 100\r\n\r\n{")
        time.sleep(0.2)
    assert httpx.get(f"{srv.url}/v2/health/ready").status_code == 200
    srv.stop()
    log = srv.log()
    assert "Traceback" not in log and "failed" not in log and '"status":499' in log, log[-2000:]


OPEN_FILES = 1024  # the server's limit: `ulimit -n 1024`


@contextmanager
def _open_files(soft: int) -> Iterator[None]:
    """This process's soft open-file limit at ``soft`` meanwhile (a child started then keeps
    it); back to what it was after."""
    was, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (was, hard))


class _Prober(threading.Thread):
    """Health asked every 50 ms on a new connection, each answer's status and seconds kept."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url, self.stop = url, threading.Event()
        self.answers: list[tuple[int | str, float]] = []
        self.finished: list[float] = []  # when each answer came (time.monotonic)

    def run(self) -> None:
        for path in itertools.cycle(["/v2/health/ready", "/v2/health/live"]):
            if self.stop.is_set():
                return
            started = time.monotonic()
            try:
                status: int | str = httpx.get(self.url + path, timeout=3).status_code
            except httpx.HTTPError as err:
                status = type(err).__name__
            self.answers.append((status, time.monotonic() - started))
            self.finished.append(time.monotonic())
            time.sleep(0.05)


def _early_answer(sock: socket.socket) -> bytes | None:
    """The status line the server sent before the request was complete (b"" for a close
    without one), None when it is still waiting for the rest."""
    sock.setblocking(False)
    try:
        data = sock.recv(64, socket.MSG_PEEK)
    except BlockingIOError:
        return None
    except OSError:
        return b""
    finally:
        sock.setblocking(True)
    return data.split(b"\r\n", 1)[0][:12]


def _status(sock: socket.socket) -> int:
    """The status of the response that comes (not waiting for a keep-alive's close)."""
    data = b""
    while b"\r\n" not in data and (chunk := sock.recv(4096)):
        data += chunk
    return int(data.split(b" ", 2)[1])


def _closed_by_server(sock: socket.socket) -> bool:
    sock.setblocking(False)
    try:
        return sock.recv(1, socket.MSG_PEEK) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


def test_idle_connections_past_the_open_file_limit_never_stop_health(
    packaged: Packaged, tmp_path: Path
) -> None:
    """Under `ulimit -n 1024`, 1,100 idle connections took every descriptor and health failed
    for 30 s. Now the oldest idle ones are closed near the bound, health answers throughout
    (within 2.5 s: one TCP SYN retransmission), and with every connection busy a new one is
    answered 503 in JSON."""
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard != resource.RLIM_INFINITY and hard < 4096:
        pytest.skip(f"this test opens 1,900 sockets; the open-file hard limit is {hard}")
    bound = budget(OPEN_FILES).connections
    with contextlib.ExitStack() as stack:
        with _open_files(OPEN_FILES):
            srv = stack.enter_context(
                serving("--model-dir", str(packaged.v1), "--no-collect", cwd=tmp_path)
            )
        stack.enter_context(_open_files(hard if hard != resource.RLIM_INFINITY else 65536))
        assert f"{bound:,} connections each at most" in srv.log()
        prober = _Prober(srv.url)
        prober.start()
        time.sleep(0.2)
        idle = [stack.enter_context(_connect(srv)) for _ in range(1_100)]
        opened = time.monotonic()
        time.sleep(1)
        descriptors = len(os.listdir(f"/proc/{srv.process.pid}/fd"))
        prober.stop.set()
        prober.join(10)
        # Within 2.5 s: a connect whose SYN the kernel dropped in the storm of 1,100 is sent
        # again after 1 s (TCP's first retransmission), the server's part notwithstanding
        # (a clean-clone run saw one health answer at 1.10 s); the bug was 30 s of failures.
        slow = [answer for answer in prober.answers if answer[0] != 200 or answer[1] >= 2.5]
        # health answered before, during and after the storm (how many depends on the load)
        assert len(prober.answers) >= 3 and not slow, (slow, len(prober.answers))
        assert any(done >= opened for done in prober.finished), "no answer once all were open"
        assert descriptors < OPEN_FILES - 64, descriptors
        closed = [_closed_by_server(sock) for sock in idle]
        assert sum(closed) >= len(idle) - bound, sum(closed)
        assert closed[0] and not closed[-1]  # least recently used first
        for sock in idle:
            sock.close()
        _wait_for(srv, "room again")

        # Every connection busy (a body on its way): nothing idle to close, so a new one is
        # refused with a JSON 503 rather than taking the last descriptors.
        head = (
            b"POST /score HTTP/1.1\r\nHost: t\r\ncontent-type: application/json\r\n"
            b"content-length: %d\r\n\r\n" % len(ROW)
        )
        busy = []
        for i in range(bound + 60):
            sock = stack.enter_context(_connect(srv))
            sock.sendall(head + ROW[:-1])
            busy.append(sock)
            if i % 100 == 99:
                time.sleep(0.05)  # the server reads the heads: those are not idle
        time.sleep(0.3)
        refused = httpx.get(f"{srv.url}/v2/health/ready", timeout=3)
        assert refused.status_code == 503, refused.text
        assert f"holds {bound} connections at most" in refused.json()["error"]
        early = [_early_answer(sock) for sock in busy]  # before their bodies were complete
        waiting = [sock for sock, answer in zip(busy, early, strict=True) if answer is None]
        for sock in waiting:
            sock.sendall(ROW[-1:])  # the rest of the body: the request completes
        answers = [_status(sock) for sock in waiting]
        assert answers == [200] * bound, (len(answers), set(answers))  # none in flight lost
        assert {a for a in early if a} == {b"HTTP/1.1 503"}, set(early)
        for sock in busy:
            sock.close()
        _wait_for(srv, "room again", count=2)
        assert httpx.get(f"{srv.url}/v2/health/ready", timeout=3).status_code == 200
    log = srv.log()
    assert log.count(f"near this process's bound of {bound}") == 2, log[-3000:]  # once each
    assert "Traceback" not in log


def _wait_for(srv: ServeProcess, text: str, count: int = 1, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while srv.log().count(text) < count:
        assert time.monotonic() < deadline, f"no {text!r} in the log:\n{srv.log()[-2000:]}"
        time.sleep(0.05)
