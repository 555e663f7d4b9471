"""HAProxy as the data path of the docker front: the configuration mlops-ci writes, the
runtime-API commands that change the routes, and what is read back (requests in flight per
version from ``show stat``; one log line per request for the per-version metrics).

Why HAProxy (Debian's package, in the serving image) and not the Python forwarder it replaced:
a forwarder in Python cost 42 % of a version's throughput (benchmarks/docker_deploy.py); and
why not nginx: open-source nginx changes an upstream or a weight only by a reload, and a reload
closes idle keep-alive connections, so a client whose request crosses that close loses it (14 of
4,617 requests over 40 reloads, 4 clients, measured here). HAProxy's runtime API (its stats
socket) sets weights, adds and deletes servers (dynamic servers, HAProxy >= 2.4) and edits map
files while it runs: a route change reloads nothing and closes no connection.

The layout: frontend ``front`` on the published port; backend ``split`` holds each version's
server with its weight (weighted round robin; a failed connect is retried on another version);
backends ``pin0`` … ``pinN`` hold one version each, picked through the map file by the
``x-model-version`` header; backend ``control`` is the controller (``/admin/front``,
``/metrics``). Only the scoring and health routes are forwarded, without the client's
``Authorization`` and ``Cookie``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import orjson

# The most versions one environment routes at once (a rollout has two): pin backends are
# declared in the configuration, as HAProxy cannot add a backend while it runs.
PIN_SLOTS = 8
MAX_WEIGHT = 256  # HAProxy's server weights are integers 0..256
SERVED_KEY = "*served*"
# A dynamic server keeps no idle connections unless told to: without these every request
# opened a new connection to the version (0.55x the direct rate at 1 client instead of 0.78x).
POOL = "pool-max-conn 256 pool-purge-delay 60s"


@dataclass(frozen=True)
class FrontSpec:
    """What the configuration is made of."""

    host: str
    port: int
    control_port: int  # the controller, on loopback
    log_port: int  # UDP syslog, on loopback: one line per request
    socket: str  # the runtime API's unix socket
    pin_map: str  # x-model-version -> pinN
    forwarded: tuple[tuple[str, tuple[str, ...]], ...]  # (path pattern, methods)
    max_body_bytes: int
    read_timeout_s: float
    upstream_timeout_s: float


def _path_acl(pattern: str) -> str:
    """``/v2/models/{name}/infer`` as an exact ``path`` or a ``path_reg`` match."""
    if "{" not in pattern:
        return f"path {pattern}"
    escaped = re.escape(pattern).replace(r"\{", "{").replace(r"\}", "}")
    regex = re.sub(r"\{[a-z_]+\}", "[^/]+", escaped)
    return f"path_reg ^{regex}$"


def _json(text: str) -> str:
    """A JSON error body inside a single-quoted HAProxy string."""
    body = orjson.dumps({"error": text}).decode()
    assert "'" not in body, body  # our own messages only
    return body


def render_config(spec: FrontSpec) -> str:
    """haproxy.cfg for ``spec``; the routes come later, over the runtime API."""
    acls: list[str] = []
    allowed: list[str] = []
    for index, (pattern, methods) in enumerate(spec.forwarded):
        acls.append(f"  acl route{index} {_path_acl(pattern)}")
        acls.append(f"  acl method{index} method {' '.join(methods)}")
        allowed.append(f"route{index} method{index}")
    pins = "\n".join(
        f"backend pin{k}\n  balance roundrobin\n  retries 1\n" for k in range(PIN_SLOTS)
    )
    read_s = max(1, round(spec.read_timeout_s))
    upstream_s = max(1, round(spec.upstream_timeout_s))
    limit = f"{spec.max_body_bytes:,}"
    errors = {
        400: "the request is not valid HTTP",
        408: f"the request did not arrive within {read_s} s",
        500: "the front failed",
        502: "the version did not answer",
        503: "no model version takes traffic here yet, or none answered",
        504: f"the version did not answer within {upstream_s} s",
    }
    http_errors = "\n".join(
        f"  http-error status {code} content-type application/json string '{_json(text)}'"
        for code, text in errors.items()
    )
    not_served = "x-model-version is not served here (served: %[str(" + SERVED_KEY + ")"
    not_served += f",map({spec.pin_map},none)])"
    json_type = "content-type application/json"
    refuse_route = (
        f"http-request return status 404 {json_type} "
        f"string '{_json('not a route of this endpoint')}' "
        f"unless control or {' or '.join(allowed)}"
    )
    too_big = (
        f"http-request return status 413 {json_type} "
        f"string '{_json(f'the body is over {limit} bytes')}' "
        f"if {{ req.hdr_val(content-length) gt {spec.max_body_bytes} }} "
        f"or {{ req.body_size gt {spec.max_body_bytes} }}"
    )
    unknown_pin = (
        f"http-request return status 404 {json_type} "
        f'lf-string \'{{"error":"{not_served}"}}\' if pinned !control !{{ var(txn.pin) -m found }}'
    )
    return f"""\
# Written by mlops-ci front; routes are set over the runtime API, not in this file.
global
  stats socket {spec.socket} mode 600 level admin
  # raw: the line alone, no syslog header (no timestamp: a batch of alike lines dedupes)
  log 127.0.0.1:{spec.log_port} len 2048 format raw local0
  nbthread 1
  # a second HAProxy on the port (a front's orphan) fails to start instead of sharing it
  noreuseport
  maxconn 4096
  tune.bufsize 65536

defaults
  mode http
  log global
  option dontlognull
  log-format '{{"b":"%b","s":"%s","p":"%HP","c":%ST,"t":%Ta}}'
  option http-keep-alive
  http-reuse always
  timeout connect 5s
  timeout client {max(read_s, 60)}s
  timeout server {upstream_s}s
  timeout http-request {read_s}s
  timeout http-keep-alive 75s
{http_errors}

frontend front
  bind {spec.host}:{spec.port}
  # A request body is waited for (up to tune.bufsize) within timeout http-request: slow -> 408.
  option http-buffer-request
  acl control path /admin/front /metrics
{chr(10).join(acls)}
  {refuse_route}
  {too_big}
  http-request del-header authorization unless control
  http-request del-header cookie unless control
  acl pinned req.hdr(x-model-version) -m found
  http-request set-var(txn.pin) req.hdr(x-model-version),map({spec.pin_map}) if pinned !control
  {unknown_pin}
  use_backend control if control
  use_backend %[var(txn.pin)] if pinned
  default_backend split

backend control
  server control 127.0.0.1:{spec.control_port}

backend split
  balance roundrobin
  option redispatch 1
  retries 2

{pins}"""


def haproxy_weights(weights: dict[str, float]) -> dict[str, int]:
    """Weights of any scale as HAProxy's integers (0..256, the largest at 256), every
    positive weight at least 1."""
    top = max(weights.values(), default=0.0)
    if top <= 0:
        return {v: 0 for v in weights}
    return {v: max(1, round(w / top * MAX_WEIGHT)) if w > 0 else 0 for v, w in weights.items()}


def inflight(stat_csv: str) -> dict[str, int]:
    """Requests in flight per version (server name) from ``show stat``, summed over the
    split and pin backends."""
    counts: dict[str, int] = {}
    header: list[str] = []
    for line in stat_csv.splitlines():
        if line.startswith("# "):
            header = line[2:].split(",")
            continue
        if not line or not header:
            continue
        row = dict(zip(header, line.split(","), strict=False))
        backend, server = row.get("pxname", ""), row.get("svname", "")
        if server in ("FRONTEND", "BACKEND") or backend in ("front", "control"):
            continue
        counts[server] = counts.get(server, 0) + int(row.get("scur") or 0)
    return counts


@dataclass(frozen=True)
class LogLine:
    """One request as HAProxy logged it."""

    backend: str
    server: str
    path: str
    status: int
    seconds: float


def parse_log(datagram: bytes) -> LogLine | None:
    """The request in a syslog datagram from HAProxy, or None for any other line."""
    start = datagram.find(b"{")
    if start < 0:
        return None
    try:
        item = orjson.loads(datagram[start:].strip())
        return LogLine(
            str(item["b"]), str(item["s"]), str(item["p"]), int(item["c"]), float(item["t"]) / 1e3
        )
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return None


def commands_for(
    old: dict[str, tuple[str, int]],
    new: dict[str, tuple[str, int]],
    slots: dict[str, int],
    pin_map: str,
) -> list[str]:
    """Runtime-API commands taking HAProxy from ``old`` to ``new`` (version -> (address,
    weight)); ``slots`` gives each version its pin backend. A version that leaves is put in
    maintenance and unpinned (it takes nothing new and finishes what it has); its servers are
    deleted once drained (``delete_commands``)."""
    # New servers and raised weights first, lowered weights after, removals last: at no
    # moment between two commands is every version at weight 0.
    out: list[str] = []
    lowered: list[str] = []
    for version, (address, weight) in new.items():
        pin = f"pin{slots[version]}"
        before = old.get(version)
        if before is None:
            out += [
                f"add server split/{version} {address} weight {weight} {POOL}",
                f"add server {pin}/{version} {address} {POOL}",
                f"set server split/{version} state ready",
                f"set server {pin}/{version} state ready",
                f"add map {pin_map} {version} {pin}",
            ]
            continue
        if before[0] != address:
            host, port = address.rsplit(":", 1)
            out.append(f"set server split/{version} addr {host} port {port}")
            out.append(f"set server {pin}/{version} addr {host} port {port}")
        if before[1] != weight:
            (out if weight > before[1] else lowered).append(f"set weight split/{version} {weight}")
    out += lowered
    for version in old:
        if version not in new:
            out += [
                f"del map {pin_map} {version}",
                f"set server split/{version} state maint",
                f"set server pin{slots[version]}/{version} state maint",
            ]
    served = ",".join(sorted(new)) or "none"
    out.append(f"set map {pin_map} {SERVED_KEY} {served}")
    return out


def delete_commands(version: str, slot: int) -> list[str]:
    """Commands removing a drained version's servers."""
    return [f"del server split/{version}", f"del server pin{slot}/{version}"]
