"""The front of a docker environment: one published port, each version its own container behind.

A reverse proxy (Starlette in, aiohttp out, which forwards at twice httpx's rate here) that
sends each request to one version's container by the weighted split (``x-model-version`` pins
one), counts the requests in flight per version so a replaced container is stopped only once it
has answered everything it took, and exports the same per-version Prometheus metrics as
`mlops-ci serve`, so the deploy step judges canary steps from the front exactly as it does for
the local target. Upstreams and weights are changed over ``/admin/front`` (bearer token) and
kept in ``front.json`` in the state folder (a volume), so a restarted front resumes where it was.

What it forwards is closed by construction: only the scoring and health routes of the v2
protocol and ``/score`` (``FORWARDED``), without the client's ``Authorization`` or ``Cookie``;
every other path (a version's ``/admin/*``, its ``/metrics``) is a 404 of the front's own. An
upstream is accepted only if it is a version container of this environment (``UpstreamRule``:
``http://NAME-vVERSION:PORT`` on its own network), so the admin API cannot point the front at
another host (no SSRF), nor can an edited ``front.json``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import re
import secrets
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson

from mlops_ci.records import write_text_atomic

STATE_FILE = "front.json"
# Hop-by-hop headers (RFC 9110 7.6.1) and the ones the forwarding side recomputes.
_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
    }
)
# The client's credentials are the front's business, never a version container's.
_NOT_FORWARDED = _HOP_BY_HOP | {"authorization", "cookie"}
# (path, methods) of what a version container answers for clients; nothing else goes through.
FORWARDED = (
    ("/score", ["POST"]),
    ("/v2/models/{name}/infer", ["POST"]),
    ("/v2/models/{name}/versions/{version}/infer", ["POST"]),
    ("/v2", ["GET"]),
    ("/v2/health/live", ["GET"]),
    ("/v2/health/ready", ["GET"]),
    ("/v2/models/{name}", ["GET"]),
    ("/v2/models/{name}/ready", ["GET"]),
    ("/v2/models/{name}/versions/{version}", ["GET"]),
    ("/v2/models/{name}/versions/{version}/ready", ["GET"]),
    ("/openapi.json", ["GET"]),
)


class FrontError(ValueError):
    """A refused admin change; the message says which field."""


_VERSION = re.compile(r"[A-Za-z0-9._-]{1,64}")
# Why an upstream URL for a version is refused, or None when it is one the front may use.
UpstreamCheck = Callable[[str, str], str | None]


@dataclass(frozen=True)
class UpstreamRule:
    """The only upstreams a docker front takes: its environment's version containers, by
    the name the docker target gives them, on the port they listen on."""

    base: str  # mlops-ci-MODEL-ENV
    port: int

    def url(self, version: str) -> str:
        return f"http://{self.base}-v{version}:{self.port}"

    def __call__(self, version: str, url: str) -> str | None:
        if not _VERSION.fullmatch(version):
            return f"version '{version[:64]}' is not a version name (letters, digits, . _ -)"
        if url.rstrip("/") == self.url(version):
            return None
        return f"version '{version}' must be {self.url(version)} (a version container here)"


@dataclass(frozen=True)
class Routes:
    """Which container serves each version, and the share of unpinned traffic each takes."""

    upstreams: dict[str, str]  # version -> base URL
    weights: dict[str, float]  # version -> weight (any scale; share = weight / total)

    def choose(self, draw: float) -> str | None:
        """The version for a uniform ``draw`` in [0, 1), or None when no version has weight."""
        total = sum(self.weights.values())
        if total <= 0:
            return None
        point, seen = draw * total, 0.0
        chosen = None
        for version, weight in self.weights.items():
            if weight > 0:
                chosen = version
                seen += weight
                if point < seen:
                    return version
        return chosen

    def to_json(self) -> dict[str, Any]:
        return {"upstreams": self.upstreams, "weights": self.weights}


def parse_routes(body: Any, allowed: UpstreamCheck) -> Routes:
    """Routes from an admin request body ``{"upstreams": {...}, "weights": {...}}``; each
    upstream must pass ``allowed``."""
    if not isinstance(body, dict):
        raise FrontError('the body must be {"upstreams": {...}, "weights": {...}}')
    upstreams, weights = body.get("upstreams"), body.get("weights", {})
    if not isinstance(upstreams, dict) or not all(
        isinstance(k, str) and isinstance(v, str) and v.startswith(("http://", "https://"))
        for k, v in upstreams.items()
    ):
        raise FrontError("'upstreams' must map each version to an http(s):// URL")
    for version, url in upstreams.items():
        refused = allowed(version, url)
        if refused:
            raise FrontError(f"upstreams: {refused}")
    if not isinstance(weights, dict):
        raise FrontError("'weights' must map versions to numbers >= 0")
    for version, weight in weights.items():
        if version not in upstreams:
            raise FrontError(f"weights: version '{version}' has no upstream")
        if type(weight) not in (int, float) or not 0 <= weight <= 1e9:
            raise FrontError(f"weights: the weight of version '{version}' must be a number >= 0")
    return Routes(
        {str(k): v.rstrip("/") for k, v in upstreams.items()},
        {str(k): float(v) for k, v in weights.items()},
    )


def load_routes(state_dir: Path, allowed: UpstreamCheck) -> Routes:
    """The routes a previous run of the front left (if still allowed), else none."""
    try:
        return parse_routes(orjson.loads((state_dir / STATE_FILE).read_bytes()), allowed)
    except (OSError, orjson.JSONDecodeError, FrontError):
        return Routes({}, {})


def build_front(
    model: str,
    state_dir: Path,
    token: str,
    allowed: UpstreamCheck,
    timeout: float = 60.0,
    max_body_bytes: int = 64 * 1024 * 1024,
    read_timeout_s: float = 30.0,
) -> Any:
    """The ASGI app of the front; bodies past ``max_body_bytes`` are refused (413) unread."""
    import aiohttp
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    from mlops_ci.serve.metrics import ServiceMetrics
    from mlops_ci.serve.payload import echoed
    from mlops_ci.serve.protocol import within
    from mlops_ci.serve.resolver import StickyResolver

    state_dir.mkdir(parents=True, exist_ok=True)
    routes = load_routes(state_dir, allowed)
    inflight: dict[str, int] = {}
    metrics = ServiceMetrics(model)
    draw = random.Random()
    session: aiohttp.ClientSession | None = None
    resolver = StickyResolver()  # no name lookup waits in a request after the first

    def client() -> aiohttp.ClientSession:
        nonlocal session
        if session is None:
            session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=timeout, sock_connect=5.0),
                connector=aiohttp.TCPConnector(limit=256, resolver=resolver, use_dns_cache=False),
                auto_decompress=False,
            )
        return session

    def answer(status: int, body: dict[str, Any], version: str | None = None) -> Response:
        headers = {"x-model-version": version} if version else None
        return Response(orjson.dumps(body), status, headers, media_type="application/json")

    def authorized(request: Request) -> bool:
        given = request.headers.get("authorization", "")
        return bool(token) and secrets.compare_digest(given.encode(), f"Bearer {token}".encode())

    async def admin(request: Request) -> Response:
        nonlocal routes
        if not authorized(request):
            return answer(401, {"error": "admin endpoints need 'Authorization: Bearer TOKEN'"})
        if request.method == "PUT":
            try:
                new = parse_routes(orjson.loads(await request.body()), allowed)
            except orjson.JSONDecodeError as err:
                return answer(400, {"error": f"body is not JSON: {err}"})
            except FrontError as err:
                return answer(422, {"error": str(err)})
            # a new version's name is looked up here, not in a client's request
            hosts = [urlsplit(u) for u in new.upstreams.values()]
            await resolver.warm([(h.hostname or "", h.port or 80) for h in hosts])
            routes = new
            write_text_atomic(state_dir / STATE_FILE, orjson.dumps(routes.to_json()).decode())
            metrics.set_shares(_shares(routes.weights))
        return answer(200, {**routes.to_json(), "inflight": dict(inflight)})

    async def own_metrics(_request: Request) -> Response:
        return Response(metrics.render(), media_type=metrics.content_type)

    async def forward(request: Request) -> Response:
        started = time.perf_counter()
        pinned = request.headers.get("x-model-version")
        current = routes
        if pinned is not None:
            if pinned not in current.upstreams:
                known = ", ".join(sorted(current.upstreams)) or "none"
                refused = f"x-model-version '{echoed(pinned)}' is not served here (served: {known})"
                return answer(404, {"error": refused})
            version: str | None = pinned
        else:
            version = current.choose(draw.random())
        if version is None:
            return answer(503, {"error": "no model version takes traffic here yet"})
        too_big = answer(413, {"error": f"the body is over {max_body_bytes:,} bytes"})
        declared = request.headers.get("content-length", "")
        if declared.isascii() and declared.isdigit() and int(declared) > max_body_bytes:
            return too_big
        parts: list[bytes] = []

        async def read() -> bool:  # bounded: the front never buffers more than the limit
            size = 0
            async for chunk in request.stream():
                size += len(chunk)
                if size > max_body_bytes:
                    return False
                parts.append(chunk)
            return True

        try:
            if not await within(read_timeout_s, read()):  # a slow body holds no slot for ever
                return too_big
        except asyncio.TimeoutError:
            late = answer(408, {"error": f"the body did not arrive within {read_timeout_s:g} s"})
            late.headers["connection"] = "close"
            return late
        body = b"".join(parts)
        headers = [(k, v) for k, v in request.headers.items() if k not in _NOT_FORWARDED]
        path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        tried: set[str] = set()
        fresh = False  # a pooled connection the container closed meanwhile gets one retry
        while True:
            attempt = version
            tried.add(attempt)
            inflight[attempt] = inflight.get(attempt, 0) + 1
            try:
                async with client().request(
                    request.method, current.upstreams[attempt] + path, data=body, headers=headers
                ) as upstream:
                    content = await upstream.read()
                break
            except aiohttp.ClientConnectorError as err:
                resolver.forget(err.host)  # a restarted container has a new address
                where = request.url.path
                # Nothing reached that container: another version with weight may take it.
                others = [v for v, w in current.weights.items() if w > 0 and v not in tried]
                if pinned is not None or not others:
                    return observed(attempt, where, 502, f"version {attempt} unreachable: {err}")
                version = draw.choice(others)
            except aiohttp.ServerDisconnectedError as err:
                if fresh:
                    return observed(attempt, request.url.path, 502, f"version {attempt}: {err}")
                fresh = True
            except (aiohttp.ClientError, TimeoutError) as err:
                failed = f"version {attempt} failed: {err!r}"[:300]
                return observed(attempt, request.url.path, 502, failed)
            finally:
                inflight[attempt] -= 1
        out = [(k, v) for k, v in upstream.headers.items() if k.lower() not in _HOP_BY_HOP]
        response = Response(content, upstream.status)
        response.raw_headers = [
            *[(k.encode("latin-1"), v.encode("latin-1")) for k, v in out],
            (b"content-length", str(len(content)).encode()),
        ]
        endpoint = _endpoint(request.url.path)
        if endpoint:
            seconds = time.perf_counter() - started
            metrics.observe(version, endpoint, upstream.status, seconds, 0)
        return response

    def observed(version: str, path: str, status: int, error: str) -> Response:
        endpoint = _endpoint(path)
        if endpoint:
            metrics.observe(version, endpoint, status, 0.0, 0)
        return answer(status, {"error": error}, version)

    @contextlib.asynccontextmanager
    async def lifespan(_app: Any) -> AsyncIterator[None]:
        yield
        if session is not None:
            await session.close()
        await resolver.close()

    async def not_forwarded(request: Request) -> Response:
        path = request.url.path[:80]
        return answer(404, {"error": f"{request.method} {path}: not a route of this endpoint"})

    app = Starlette(
        routes=[
            Route("/admin/front", admin, methods=["GET", "PUT"]),
            Route("/metrics", own_metrics, methods=["GET"]),
            *(Route(path, forward, methods=methods) for path, methods in FORWARDED),
            Route("/{path:path}", not_forwarded, methods=["GET", "POST", "PUT", "DELETE", "PATCH"]),
        ],
        lifespan=lifespan,
    )
    metrics.set_shares(_shares(routes.weights))
    return app


def _endpoint(path: str) -> str | None:
    """The metric label of a scoring path (as `mlops-ci serve` labels it); None for the rest,
    so health probes and arbitrary paths neither count as traffic nor grow the label set."""
    if path == "/score":
        return "score"
    if path.startswith("/v2/models/") and path.endswith("/infer"):
        return "infer"
    return None


def _shares(weights: dict[str, float]) -> dict[str, float]:
    total = sum(weights.values())
    return {v: (w / total if total else 0.0) for v, w in weights.items()}


def run_front(
    model: str, host: str, port: int, state_dir: Path, token_env: str, rule: UpstreamRule
) -> None:
    """Serve the front with uvicorn (one process: the in-flight counts live in it)."""
    import uvicorn

    token = os.environ.get(token_env, "")
    app = build_front(model, state_dir, token, rule)
    from mlops_ci.serve.protocol import BoundedHttpToolsProtocol

    # The same bounded HTTP/1.1 edge as `mlops-ci serve`: 431 and 408 before the app runs.
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_level="warning",
        access_log=False,
        http=BoundedHttpToolsProtocol,
    )
