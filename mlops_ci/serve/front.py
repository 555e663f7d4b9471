"""The front of a docker environment: one published port, each version its own container behind.

HAProxy (``serve/haproxy.py``) carries the requests: it sends each to one version's container by
the weighted split (``x-model-version`` pins one) and counts what each version has in flight, so
a replaced container is stopped only once it has answered everything it took. This module is its
controller, in the same container: the admin API (``/admin/front``, bearer token) turns routes
into HAProxy runtime-API commands (nothing reloads, no connection is closed by a change), keeps
them in ``front.json`` in the state folder (a volume, so a restarted front resumes where it
was), and reads HAProxy's per-request log lines into the same per-version Prometheus metrics as
`mlops-ci serve` (``/metrics``), which the deploy step judges canary steps from.

What it forwards is closed by construction: only the scoring and health routes of the v2
protocol and ``/score`` (``FORWARDED``), without the client's ``Authorization`` or ``Cookie``;
every other path (a version's ``/admin/*``, its ``/metrics``) is a 404 of the front's own. An
upstream is accepted only if it is a version container of this environment (``frontroutes``:
``http://NAME-vVERSION:PORT`` on its own network), so the admin API cannot point the front at
another host (no SSRF), nor can an edited ``front.json``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import secrets
import shutil
import signal
import socket
import sys
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson

from mlops_ci.errors import ServiceError
from mlops_ci.records import write_text_atomic
from mlops_ci.serve.frontroutes import (
    STATE_FILE,
    FrontError,
    Routes,
    UpstreamCheck,
    UpstreamRule,
    load_routes,
    parse_routes,
)
from mlops_ci.serve.haproxy import (
    PIN_SLOTS,
    SERVED_KEY,
    FrontSpec,
    LogLine,
    commands_for,
    delete_commands,
    haproxy_weights,
    parse_log,
    render_config,
)
from mlops_ci.serve.haproxy import inflight as haproxy_inflight
from mlops_ci.serve.metrics import ServiceMetrics

# (path, methods) of what a version container answers for clients; nothing else goes through.
FORWARDED: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("/score", ("POST",)),
    ("/v2/models/{name}/infer", ("POST",)),
    ("/v2/models/{name}/versions/{version}/infer", ("POST",)),
    ("/v2", ("GET",)),
    ("/v2/health/live", ("GET",)),
    ("/v2/health/ready", ("GET",)),
    ("/v2/models/{name}", ("GET",)),
    ("/v2/models/{name}/ready", ("GET",)),
    ("/v2/models/{name}/versions/{version}", ("GET",)),
    ("/v2/models/{name}/versions/{version}/ready", ("GET",)),
    ("/openapi.json", ("GET",)),
)


class Runtime:
    """HAProxy's runtime API on its unix socket: one command per connection, its answer."""

    def __init__(self, path: Path) -> None:
        self.path = path

    async def run(self, command: str) -> str:
        reader, writer = await asyncio.open_unix_connection(str(self.path))
        try:
            writer.write(command.encode() + b"\n")
            await writer.drain()
            return (await reader.read()).decode(errors="replace")
        finally:
            writer.close()

    async def apply(self, commands: list[str]) -> None:
        """Run ``commands`` in order; the first HAProxy refuses raises FrontError."""
        for command in commands:
            answer = (await self.run(command)).strip()
            if answer and not answer.startswith(_ACCEPTED):
                raise FrontError(f"haproxy refused '{command}': {answer.splitlines()[0]}")


# What the runtime API answers to a command it carried out (most answer nothing).
_ACCEPTED = ("New server registered", "Server deleted", "IP changed", "no need to change")


class LogReader:
    """HAProxy's per-request log lines (UDP syslog on loopback) into the metrics, read in
    batches: every ``DRAIN_S`` whatever arrived, so the controller wakes 50 times a second,
    not once per request (a wake per request cost the front 10 % of its rate here). Within a
    batch most lines are alike (same version, path, status and millisecond: the raw format
    carries no timestamp), so each distinct line is parsed once and observed as often as it came.
    """

    def __init__(self, on_line: Callable[[LogLine, int], None]) -> None:
        self.on_line = on_line
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        # room for a burst between two reads (the kernel caps it at net.core.rmem_max)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 * 1024 * 1024)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.setblocking(False)
        self.port: int = self.sock.getsockname()[1]

    def drain(self) -> None:
        lines: Counter[bytes] = Counter()
        receive = self.sock.recv
        while True:
            try:
                lines[receive(4096)] += 1
            except (BlockingIOError, InterruptedError):
                break
        for data, count in lines.items():
            line = parse_log(data)
            if line is not None:
                self.on_line(line, count)

    async def run(self) -> None:
        while True:
            self.drain()
            await asyncio.sleep(DRAIN_S)


DRAIN_S = 0.02


Resolve = Callable[[str, int], Awaitable[str]]


async def resolve_address(host: str, port: int) -> str:
    """``IP:PORT`` for a version container's name (the engine's DNS), looked up off the loop."""
    loop = asyncio.get_running_loop()
    found = await loop.getaddrinfo(host, port, family=socket.AF_INET, type=socket.SOCK_STREAM)
    if not found:
        raise OSError(f"no address for {host}")
    return f"{found[0][4][0]}:{port}"


class Controller:
    """The routes as HAProxy runs them: what is applied, each version's pin slot, what drains."""

    def __init__(
        self,
        model: str,
        state_dir: Path,
        allowed: UpstreamCheck,
        runtime: Runtime,
        pin_map: str,
        resolve: Resolve = resolve_address,
    ) -> None:
        self.model = model
        self.allowed = allowed
        self.state_dir = state_dir
        self.runtime = runtime
        self.pin_map = pin_map
        self.resolve = resolve
        self.routes = Routes({}, {})
        self.applied: dict[str, tuple[str, int]] = {}  # version -> (IP:PORT, HAProxy weight)
        self.slots: dict[str, int] = {}  # version -> pin backend, live and draining
        self.draining: dict[str, tuple[str, int]] = {}  # left the routes, not yet drained
        self.metrics = ServiceMetrics(model)
        self.lock = asyncio.Lock()

    async def set_routes(self, new: Routes) -> None:
        """Apply ``new`` over the runtime API and keep it in front.json."""
        async with self.lock:
            addresses = {}
            for version, url in new.upstreams.items():
                parts = urlsplit(url)
                try:
                    addresses[version] = await self.resolve(parts.hostname or "", parts.port or 80)
                except OSError as err:
                    raise FrontError(f"upstreams: version '{version}': {err}") from None
            weights = haproxy_weights({v: new.weights.get(v, 0.0) for v in new.upstreams})
            target = {v: (addresses[v], weights[v]) for v in new.upstreams}
            old = dict(self.applied)
            revive: list[str] = []
            for version in [v for v in target if v in self.draining]:
                # taken back before it drained: its servers still exist, in maintenance
                old[version] = self.draining.pop(version)
                pin = f"pin{self.slots[version]}"
                revive += [
                    f"set server split/{version} state ready",
                    f"set server {pin}/{version} state ready",
                    f"add map {self.pin_map} {version} {pin}",
                ]
            for version in target:
                if version not in self.slots:
                    free = sorted(set(range(PIN_SLOTS)) - set(self.slots.values()))
                    if not free:
                        raise FrontError(f"at most {PIN_SLOTS} versions can be routed at once")
                    self.slots[version] = free[0]
            await self.runtime.apply(revive + commands_for(old, target, self.slots, self.pin_map))
            self.draining.update({v: a for v, a in old.items() if v not in target})
            self.applied = target
            self.routes = new
            write_text_atomic(self.state_dir / STATE_FILE, orjson.dumps(new.to_json()).decode())
            self.metrics.set_shares(_shares(new.weights))

    async def inflight(self) -> dict[str, int]:
        counts = haproxy_inflight(await self.runtime.run("show stat"))
        return {v: n for v, n in counts.items() if v in self.slots}

    async def collect_drained(self) -> None:
        """Delete the servers of versions that left the routes and have nothing in flight."""
        if not self.draining:
            return
        async with self.lock:
            counts = await self.inflight()
            for version in sorted(self.draining):
                if counts.get(version, 0) > 0:
                    continue
                gone = True
                for command in delete_commands(version, self.slots[version]):
                    try:
                        await self.runtime.apply([command])
                    except FrontError as err:  # idle connections: next time
                        gone &= "No such server" in str(err)  # deleted on an earlier pass
                if gone:
                    del self.draining[version]
                    self.slots.pop(version)

    async def refresh_addresses(self) -> None:
        """Look the versions' names up again: a container the engine restarted may have a new
        address (a failed lookup keeps the old one)."""
        found: dict[str, str] = {}
        for version, url in self.routes.upstreams.items():
            parts = urlsplit(url)
            with contextlib.suppress(OSError):
                found[version] = await self.resolve(parts.hostname or "", parts.port or 80)
        async with self.lock:
            moved = {
                v: (address, self.applied[v][1])
                for v, address in found.items()
                if v in self.applied and self.applied[v][0] != address
            }
            if moved:
                target = {**self.applied, **moved}
                commands = commands_for(self.applied, target, self.slots, self.pin_map)
                await self.runtime.apply(commands)
                self.applied = target

    def observe(self, line: LogLine, count: int = 1) -> None:
        """``count`` requests logged as ``line``."""
        endpoint = _endpoint(line.path)
        version = line.server
        if endpoint and version in self.slots:
            for _ in range(count):
                self.metrics.observe(version, endpoint, line.status, line.seconds, 0)


def build_front(controller: Controller, token: str) -> Any:
    """The controller's ASGI app: ``/admin/front`` (GET, PUT) and ``/metrics``."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    def answer(status: int, body: dict[str, Any]) -> Response:
        return Response(orjson.dumps(body), status, media_type="application/json")

    def authorized(request: Request) -> bool:
        given = request.headers.get("authorization", "")
        return bool(token) and secrets.compare_digest(given.encode(), f"Bearer {token}".encode())

    async def admin(request: Request) -> Response:
        if not authorized(request):
            return answer(401, {"error": "admin endpoints need 'Authorization: Bearer TOKEN'"})
        if request.method == "PUT":
            try:
                new = parse_routes(orjson.loads(await request.body()), controller.allowed)
                await controller.set_routes(new)
            except orjson.JSONDecodeError as err:
                return answer(400, {"error": f"body is not JSON: {err}"})
            except FrontError as err:
                return answer(422, {"error": str(err)})
        inflight = await controller.inflight()
        return answer(200, {**controller.routes.to_json(), "inflight": inflight})

    async def own_metrics(_request: Request) -> Response:
        metrics = controller.metrics
        return Response(metrics.render(), media_type=metrics.content_type)

    return Starlette(
        routes=[
            Route("/admin/front", admin, methods=["GET", "PUT"]),
            Route("/metrics", own_metrics, methods=["GET"]),
        ]
    )


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


HOUSEKEEPING_S = 0.2  # how often drained versions are looked for
REFRESH_S = 5.0  # how often the versions' names are looked up again


async def serve_front(
    model: str,
    host: str,
    port: int,
    state_dir: Path,
    token: str,
    allowed: UpstreamCheck,
    max_body_bytes: int = 64 * 1024 * 1024,
    read_timeout_s: float = 30.0,
    upstream_timeout_s: float = 60.0,
    stop: asyncio.Event | None = None,
    started: Callable[[], None] | None = None,
    resolve: Resolve = resolve_address,
) -> None:
    """Run HAProxy on ``host:port`` and its controller on loopback until ``stop`` is set (or
    HAProxy exits: then ServiceError, so the engine's restart policy starts a new front)."""
    haproxy = shutil.which("haproxy")
    if haproxy is None:
        raise ServiceError("mlops-ci front needs HAProxy >= 2.4: apt-get install haproxy")
    version = await _haproxy_version(haproxy)
    if version < (2, 4):
        found = ".".join(map(str, version))
        raise ServiceError(f"mlops-ci front needs HAProxy >= 2.4 (dynamic servers); {found} here")
    state_dir.mkdir(parents=True, exist_ok=True)
    work = state_dir / "haproxy"
    work.mkdir(exist_ok=True)
    loop = asyncio.get_running_loop()
    runtime = Runtime(work / "admin.sock")
    pin_map = work / "pins.map"
    pin_map.write_text(f"{SERVED_KEY} none\n")
    controller = Controller(model, state_dir, allowed, runtime, str(pin_map), resolve)
    logs = LogReader(controller.observe)
    control = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    control.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    control.bind(("127.0.0.1", 0))
    spec = FrontSpec(
        host=host,
        port=port,
        control_port=control.getsockname()[1],
        log_port=logs.port,
        socket=str(runtime.path),
        pin_map=str(pin_map),
        forwarded=FORWARDED,
        max_body_bytes=max_body_bytes,
        read_timeout_s=read_timeout_s,
        upstream_timeout_s=upstream_timeout_s,
    )
    config = work / "haproxy.cfg"
    config.write_text(render_config(spec))
    runtime.path.unlink(missing_ok=True)
    process = await asyncio.create_subprocess_exec(
        haproxy, "-db", "-q", "-f", str(config), preexec_fn=_die_with_parent
    )
    import uvicorn

    server = uvicorn.Server(
        uvicorn.Config(
            build_front(controller, token), log_level="warning", access_log=False, lifespan="off"
        )
    )
    try:
        for _ in range(200):  # the runtime socket is there once HAProxy listens
            if runtime.path.exists() or process.returncode is not None:
                break
            await asyncio.sleep(0.05)
        if not runtime.path.exists():
            raise ServiceError(f"haproxy did not start (exit {process.returncode})")
        with contextlib.suppress(FrontError):  # an old front.json a new rule refuses: none
            await controller.set_routes(load_routes(state_dir, allowed))
        reading = asyncio.ensure_future(logs.run())
        serving = asyncio.ensure_future(server.serve(sockets=[control]))
        if started is not None:
            started()
        stopped = asyncio.ensure_future(stop.wait() if stop else asyncio.Event().wait())
        exited = asyncio.ensure_future(process.wait())
        refreshed = loop.time()
        while not (stopped.done() or exited.done() or serving.done()):
            await asyncio.wait({stopped, exited, serving}, timeout=HOUSEKEEPING_S)
            with contextlib.suppress(OSError, FrontError):
                await controller.collect_drained()
                if loop.time() - refreshed > REFRESH_S:
                    refreshed = loop.time()
                    await controller.refresh_addresses()
        server.should_exit = True
        await serving
        stopped.cancel()
        reading.cancel()
        if exited.done():
            raise ServiceError(f"haproxy exited ({process.returncode}); the front stops")
    finally:
        logs.sock.close()
        if process.returncode is None:
            process.send_signal(signal.SIGUSR1)  # soft stop: it finishes what it has
            try:
                await asyncio.wait_for(process.wait(), 10)
            except asyncio.TimeoutError:
                process.kill()
                await process.wait()


async def _haproxy_version(haproxy: str) -> tuple[int, ...]:
    """(major, minor) of ``haproxy -v`` ("HAProxy version 2.6.12-1 ..."); (0,) if unreadable."""
    process = await asyncio.create_subprocess_exec(
        haproxy, "-v", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL
    )
    out, _ = await process.communicate()
    found = re.search(rb"version (\d+)\.(\d+)", out)
    return (int(found.group(1)), int(found.group(2))) if found else (0,)


def _die_with_parent() -> None:
    """In HAProxy's process before it starts: SIGTERM when the front's process dies, so a
    killed front leaves no HAProxy holding its port (Linux; elsewhere nothing)."""
    if sys.platform.startswith("linux"):
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def run_front(
    model: str, host: str, port: int, state_dir: Path, token_env: str, rule: UpstreamRule
) -> None:
    """`mlops-ci front`: HAProxy and its controller until SIGTERM (docker stop)."""
    token = os.environ.get(token_env, "")

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        await serve_front(model, host, port, state_dir, token, rule, stop=stop)

    try:
        asyncio.run(main())
    except ServiceError as err:
        print(f"mlops-ci front: {err}", file=sys.stderr)
        raise SystemExit(1) from None
