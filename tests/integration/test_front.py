"""The front of a docker environment on loopback: real HAProxy and its controller, stand-in
version servers under uvicorn, httpx clients."""

from __future__ import annotations

import asyncio
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from mlops_ci.serve.front import Controller, LogReader, Runtime, serve_front
from mlops_ci.serve.frontroutes import STATE_FILE, UpstreamRule
from mlops_ci.serve.haproxy import LogLine
from mlops_ci.targets.rollout import parse_metrics
from tests.support.serve_helpers import free_port

pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.skipif(shutil.which("haproxy") is None, reason="HAProxy is not installed"),
]


TOKEN = "front-token-0123456789"


AUTH = {"authorization": f"Bearer {TOKEN}"}


def loopback(_version: str, url: str) -> str | None:
    """The stand-in containers of these tests listen on loopback ports."""
    return None if url.startswith("http://127.0.0.1:") else "loopback only in these tests"


@contextmanager
def running(app: Any) -> Iterator[str]:
    """``app`` under uvicorn on a free loopback port, in a thread; its base URL."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error", lifespan="on")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "server did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(20)


@contextmanager
def front_running(state_dir: Path, allowed: Any, **limits: Any) -> Iterator[str]:
    """`mlops-ci front` (HAProxy and its controller) on a free loopback port, in a thread."""
    port = free_port()
    ready = threading.Event()
    held: dict[str, Any] = {}

    async def main() -> None:
        held["loop"], held["stop"] = asyncio.get_running_loop(), asyncio.Event()
        await serve_front(
            "m", "127.0.0.1", port, state_dir, TOKEN, allowed, stop=held["stop"],
            started=ready.set, resolve=_loopback_or_fixed, **limits,
        )  # fmt: skip

    thread = threading.Thread(target=lambda: asyncio.run(main()), daemon=True)
    thread.start()
    assert ready.wait(30), "the front did not start"
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        held["loop"].call_soon_threadsafe(held["stop"].set)
        thread.join(30)
        assert not thread.is_alive(), "the front did not stop"


async def _loopback_or_fixed(host: str, port: int) -> str:
    """Names of version containers do not resolve on this host: any name is 127.0.0.1."""
    return f"127.0.0.1:{port}"


def metric_counts(front: str, total: int) -> Any:
    """The front's per-version counts once ``total`` requests are in (log lines arrive over
    UDP a moment after the answers)."""
    deadline = time.monotonic() + 10
    while True:
        counts = parse_metrics(httpx.get(f"{front}/metrics", timeout=10).text)
        seen = sum(c.requests for c in counts.values())
        if seen >= total or time.monotonic() > deadline:
            return counts
        time.sleep(0.05)


def version_app(version: str, delay: float = 0.0) -> Starlette:
    """A stand-in for one version's container: answers who it is, after ``delay`` seconds."""

    async def score(request: Request) -> JSONResponse:
        body = await request.json()
        await asyncio.sleep(delay)
        return JSONResponse(
            {
                "version": version,
                "echo": body,
                "query": request.url.query,
                "headers": sorted(request.headers),
            },
            headers={"x-model-version": version},
        )

    async def ready(_request: Request) -> JSONResponse:
        return JSONResponse({"ready": True})

    async def admin(_request: Request) -> JSONResponse:
        return JSONResponse({"admin": "reached"})

    return Starlette(
        routes=[
            Route("/score", score, methods=["POST"]),
            Route("/v2/health/ready", ready, methods=["GET"]),
            Route("/admin/split", admin, methods=["GET", "PUT"]),
            Route("/metrics", admin, methods=["GET"]),
        ]
    )


def put(front: str, upstreams: dict[str, str], weights: dict[str, float]) -> httpx.Response:
    body = {"upstreams": upstreams, "weights": weights}
    return httpx.put(f"{front}/admin/front", json=body, headers=AUTH, timeout=10)


# One pooled client: httpx.post alone builds a client (and its TLS context) per call.
CLIENT = httpx.Client(timeout=10)


def score(front: str, pin: str | None = None) -> httpx.Response:
    headers = {"x-model-version": pin} if pin else {}
    return CLIENT.post(f"{front}/score?x=1", json={"inputs": [[1.0]]}, headers=headers)


def test_requests_follow_the_routes_and_a_pin(tmp_path: Path) -> None:
    with (
        running(version_app("1")) as one,
        running(version_app("2")) as two,
        front_running(tmp_path, loopback) as front,
    ):
        assert score(front).status_code == 503  # nothing routed yet
        assert put(front, {"1": one, "2": two}, {"1": 100, "2": 0}).status_code == 200
        answers = [score(front).json() for _ in range(20)]
        assert {a["version"] for a in answers} == {"1"}
        assert answers[0]["echo"] == {"inputs": [[1.0]]} and answers[0]["query"] == "x=1"
        assert score(front, pin="2").json()["version"] == "2"
        unknown = score(front, pin="9")
        assert unknown.status_code == 404 and "served: 1,2" in unknown.json()["error"]
        put(front, {"1": one, "2": two}, {"1": 50, "2": 50})
        seen = [score(front).headers["x-model-version"] for _ in range(200)]
        assert seen.count("2") == 100  # weighted round robin: exactly half
        put(front, {"1": one, "2": two}, {"1": 90, "2": 10})
        tenth = [score(front).headers["x-model-version"] for _ in range(200)]
        assert 15 <= tenth.count("2") <= 25, tenth.count("2")
        counts = metric_counts(front, 421)
        # 20 + 1 pinned + 400: refusals, health probes and admin calls are not traffic
        assert counts["1"].requests + counts["2"].requests == 421
        assert counts["2"].requests == seen.count("2") + tenth.count("2") + 1


def test_admin_needs_the_token_and_a_well_formed_body(tmp_path: Path) -> None:
    with front_running(tmp_path, loopback) as front:
        assert httpx.get(f"{front}/admin/front", timeout=10).status_code == 401
        wrong = {"authorization": "Bearer nope"}
        assert httpx.put(f"{front}/admin/front", json={}, headers=wrong).status_code == 401
        bad = put(front, {"1": "ftp://x"}, {"1": 1})
        assert bad.status_code == 422 and "http(s)://" in bad.json()["error"]
        orphan = put(front, {"1": "http://127.0.0.1:1"}, {"2": 1})
        assert orphan.status_code == 422 and "'2' has no upstream" in orphan.json()["error"]
        text = httpx.put(f"{front}/admin/front", content=b"{", headers=AUTH)
        assert text.status_code == 400
        assert httpx.get(f"{front}/admin/front", headers=AUTH).json()["upstreams"] == {}


def test_a_restarted_front_resumes_its_routes(tmp_path: Path) -> None:
    with running(version_app("3")) as three:
        with front_running(tmp_path, loopback) as front:
            put(front, {"3": three}, {"3": 1})
        with front_running(tmp_path, loopback) as again:
            assert score(again).json()["version"] == "3"


def test_a_dead_version_is_skipped_for_unpinned_requests(tmp_path: Path) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    with (
        running(version_app("2")) as two,
        front_running(tmp_path, loopback) as front,
    ):
        put(front, {"1": dead, "2": two}, {"1": 50, "2": 50})
        assert {score(front).status_code for _ in range(30)} == {200}
        pinned = score(front, pin="1")
        assert pinned.status_code == 503 and "none answered" in pinned.json()["error"]
        put(front, {"1": dead}, {"1": 1})
        assert score(front).status_code == 503
        counts = metric_counts(front, 32)
        assert counts["1"].server_errors == 2 and counts["2"].requests == 30


def test_switching_versions_under_load_drops_nothing(tmp_path: Path) -> None:
    """The blue-green step the docker target takes: route to the new version, wait until the
    old one has nothing in flight, then stop it; clients never see a failure."""
    statuses: list[int] = []
    versions: list[str] = []
    stop = threading.Event()

    def client() -> None:
        with httpx.Client(timeout=10) as http:
            while not stop.is_set():
                try:
                    answer = http.post(f"{front}/score", json={"inputs": [[1.0]]})
                    statuses.append(answer.status_code)
                    versions.append(answer.headers.get("x-model-version", "-"))
                except httpx.HTTPError:
                    statuses.append(-1)

    pool = ThreadPoolExecutor(4)
    with (
        front_running(tmp_path, loopback) as front,
        running(version_app("2")) as two,
    ):
        try:
            with running(version_app("1", delay=0.02)) as one:
                put(front, {"1": one}, {"1": 1})
                for _ in range(4):
                    pool.submit(client)
                time.sleep(0.5)
                put(front, {"1": one, "2": two}, {"1": 0, "2": 1})
                deadline = time.monotonic() + 10
                while httpx.get(f"{front}/admin/front", headers=AUTH).json()["inflight"].get("1"):
                    assert time.monotonic() < deadline, "v1 never drained"
                    time.sleep(0.01)
            # v1's server is gone now; the clients go on for a while against v2 alone.
            put(front, {"2": two}, {"2": 1})
            time.sleep(0.5)
        finally:
            stop.set()
            pool.shutdown(wait=True)
    assert statuses and set(statuses) == {200}, {s: statuses.count(s) for s in set(statuses)}
    assert versions[0] == "1" and versions[-1] == "2" and "1" not in versions[-20:]


def test_a_body_past_the_limit_is_refused_unread(tmp_path: Path) -> None:
    with (
        running(version_app("1")) as one,
        front_running(tmp_path, loopback, max_body_bytes=1000) as front,
    ):
        put(front, {"1": one}, {"1": 1})
        big = httpx.post(f"{front}/score", content=b"x" * 2000, timeout=10)
        assert big.status_code == 413 and "1,000 bytes" in big.json()["error"]
        chunked = httpx.post(f"{front}/score", content=iter([b"x" * 600, b"x" * 600]), timeout=10)
        assert chunked.status_code == 413  # no Content-Length: counted as it arrives
        small = httpx.post(f"{front}/score", json={"inputs": [[1.0]]}, timeout=10)
        assert small.status_code == 200 and small.json()["version"] == "1"


def test_the_front_takes_only_its_own_version_containers_as_upstreams(tmp_path: Path) -> None:
    """No SSRF through /admin/front: an upstream is http://BASE-vVERSION:PORT or refused,
    whatever the admin sends or an edited front.json says."""
    rule = UpstreamRule("mlops-ci-m-prod", 8080)
    assert rule("2", "http://mlops-ci-m-prod-v2:8080") is None
    assert "not a version name" in str(rule("2/../x", "http://mlops-ci-m-prod-v2/../x:8080"))
    assert rule("2", "http://mlops-ci-m-prod-v2:8080/") is None
    for url in (
        "http://169.254.169.254/latest/meta-data",
        "http://mlops-ci-m-prod-v1:8080",  # another version's container
        "http://mlops-ci-m-prod-v2:9000",
        "http://mlops-ci-m-prod-v2:8080@evil.example",
        "https://mlops-ci-m-prod-v2:8080",
        "http://mlops-ci-m-staging-v2:8080",
    ):
        assert rule("2", url), url
    (tmp_path / STATE_FILE).write_text(
        '{"upstreams": {"2": "http://169.254.169.254"}, "weights": {}}'
    )
    with front_running(tmp_path, rule) as front:
        assert httpx.get(f"{front}/admin/front", headers=AUTH).json()["upstreams"] == {}
        refused = put(front, {"2": "http://169.254.169.254/"}, {"2": 1})
        assert refused.status_code == 422
        assert "must be http://mlops-ci-m-prod-v2:8080" in refused.json()["error"]
        assert put(front, {"2": "http://mlops-ci-m-prod-v2:8080"}, {"2": 1}).status_code == 200


def test_only_scoring_and_health_are_forwarded_and_without_credentials(tmp_path: Path) -> None:
    """A version's /admin/* and /metrics are not reachable through the front, and the
    client's Authorization and Cookie never reach a version container."""
    with (
        running(version_app("1")) as one,
        front_running(tmp_path, loopback) as front,
    ):
        put(front, {"1": one}, {"1": 1})
        secret = {"authorization": "Bearer client-SECRET", "cookie": "session=SECRET", "x-k": "v"}
        seen = CLIENT.post(f"{front}/score", json={"inputs": [[1.0]]}, headers=secret).json()
        assert "x-k" in seen["headers"]
        assert not {"authorization", "cookie"} & set(seen["headers"]), seen["headers"]
        for method, path in (("GET", "/admin/split"), ("PUT", "/admin/split"), ("GET", "/x")):
            answer = CLIENT.request(method, f"{front}{path}", headers=AUTH)
            assert answer.status_code == 404 and "not a route" in answer.json()["error"], path
        assert "admin" not in CLIENT.get(f"{front}/metrics").text  # the front's own metrics
        assert CLIENT.get(f"{front}/v2/health/ready").json() == {"ready": True}


def test_a_body_slower_than_the_read_timeout_gets_408(tmp_path: Path) -> None:
    def slow() -> Iterator[bytes]:
        yield b'{"inputs": '
        time.sleep(2.5)
        yield b"[[1.0]]}"

    with (
        running(version_app("1")) as one,
        front_running(tmp_path, loopback, read_timeout_s=1) as front,
    ):
        put(front, {"1": one}, {"1": 1})
        late = httpx.post(f"{front}/score", content=slow(), timeout=10)
        assert late.status_code == 408 and "within 1 s" in late.json()["error"]
        assert late.headers["connection"] == "close"
        assert score(front).status_code == 200


def test_alike_log_lines_are_parsed_once_and_counted_as_often_as_they_came(
    tmp_path: Path,
) -> None:
    """The controller's share of a request is one read of its log line: a batch of alike lines
    (raw format: no timestamp) is parsed once per kind, and every request is still counted."""
    seen: list[tuple[LogLine, int]] = []
    reader = LogReader(lambda line, count: seen.append((line, count)))
    fast = b'{"b":"split","s":"1","p":"/score","c":200,"t":0}\n'
    failed = b'{"b":"pin1","s":"2","p":"/score","c":503,"t":7}\n'
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        for data in [fast] * 30 + [failed] * 5 + [b"Proxy front started."]:
            sender.sendto(data, ("127.0.0.1", reader.port))
        deadline = time.monotonic() + 5
        while sum(n for _, n in seen) < 35 and time.monotonic() < deadline:
            reader.drain()
            time.sleep(0.01)
    finally:
        sender.close()
        reader.sock.close()
    counts: dict[tuple[str, int], int] = {}
    for line, n in seen:
        counts[(line.server, line.status)] = counts.get((line.server, line.status), 0) + n
    assert counts == {("1", 200): 30, ("2", 503): 5}
    assert len(seen) <= 4, seen  # one parse per kind and drain, not one per line
    controller = Controller("m", tmp_path, loopback, Runtime(tmp_path / "none.sock"), "pins")
    controller.slots = {"1": 0, "2": 1}
    for line, n in seen:
        controller.observe(line, n)
    metrics = parse_metrics(controller.metrics.render().decode())
    assert (metrics["1"].requests, metrics["2"].requests, metrics["2"].server_errors) == (30, 5, 5)
