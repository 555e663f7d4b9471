"""wrk (Debian's package `wrk`), the standard HTTP load tool, posting one JSON body.

A Python client measures itself before it measures a server at more than one connection (the
GIL): wrk, one event loop in C, keeps N connections busy and reports latency percentiles.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}


@dataclass(frozen=True)
class Load:
    """What one wrk run measured."""

    rps: float
    p50_ms: float
    p99_ms: float
    errors: int  # non-2xx/3xx answers, socket errors and timeouts
    requests: int


def wrk_path() -> str:
    found = shutil.which("wrk")
    if found is None:
        raise SystemExit("wrk is not installed: apt-get install wrk (Debian's package)")
    return found


def _ms(text: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text).groups()  # type: ignore[union-attr]
    return float(number) * _UNITS[unit]


def parse(output: str) -> Load:
    """A Load from wrk's text output (run with --latency)."""
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore[union-attr]
    requests = int(re.search(r"(\d+) requests in", output).group(1))  # type: ignore[union-attr]
    p50 = _ms(re.search(r"\s50%\s+(\S+)", output).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"\s99%\s+(\S+)", output).group(1))  # type: ignore[union-attr]
    errors = int(m.group(1)) if (m := re.search(r"Non-2xx or 3xx responses: (\d+)", output)) else 0
    if m := re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    ):
        errors += sum(int(g) for g in m.groups())
    return Load(rps, p50, p99, errors, requests)


def post_load(
    url: str,
    body: dict[str, Any],
    connections: int,
    seconds: float,
    headers: dict[str, str] | None = None,
    taskset: str | None = None,
) -> Load:
    """POST ``body`` as JSON to ``url`` from ``connections`` connections (one wrk thread) for
    ``seconds`` (whole seconds, at least 1: wrk takes no fractions); ``taskset`` pins wrk to
    those CPUs (e.g. "0")."""
    all_headers = {"content-type": "application/json", **(headers or {})}
    raw = json.dumps(body).encode()
    return post_bytes_load(url, raw, connections, seconds, all_headers, taskset)


def alternated(
    urls: dict[str, str],
    body: dict[str, Any],
    connections: int,
    rounds: int,
    seconds: float,
    taskset: str | None = None,
) -> dict[str, list[Load]]:
    """Each URL loaded for ``rounds`` rounds of ``seconds`` with ``body`` as JSON (see
    ``alternated_bytes``)."""
    headers = {"content-type": "application/json"}
    return alternated_bytes(
        urls, json.dumps(body).encode(), headers, connections, rounds, seconds, taskset
    )


def post_bytes_load(
    url: str,
    body: bytes,
    connections: int,
    seconds: float,
    headers: dict[str, str] | None = None,
    taskset: str | None = None,
) -> Load:
    """POST the raw ``body`` with ``headers`` (give its Content-Type): wrk's script reads it
    from a file once (a v2 binary tensor body cannot go through a Lua string literal)."""
    with tempfile.TemporaryDirectory(prefix="wrk-") as tmp:
        data = Path(tmp) / "body.bin"
        data.write_bytes(body)
        lua = (
            f'local f = assert(io.open({json.dumps(str(data))}, "rb"))\n'
            'wrk.method = "POST"\nwrk.body = f:read("*a")\nf:close()\n'
        ) + "".join(
            f"wrk.headers[{json.dumps(k)}] = {json.dumps(v)}\n" for k, v in (headers or {}).items()
        )
        script = Path(tmp) / "post.lua"
        script.write_text(lua)
        argv = [wrk_path(), "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--latency"]
        argv += ["-s", str(script), url]
        if taskset:
            argv = ["taskset", "-c", taskset, *argv]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60)
    if done.returncode != 0:
        raise SystemExit(f"wrk failed: {done.stderr.strip() or done.stdout.strip()}")
    return parse(done.stdout)


def alternated_bytes(
    urls: dict[str, str],
    body: bytes,
    headers: dict[str, str],
    connections: int,
    rounds: int,
    seconds: float,
    taskset: str | None = None,
) -> dict[str, list[Load]]:
    """Each URL loaded for ``rounds`` rounds of ``seconds``, the order reversed every other
    round so the machine's drift hits all alike; each round after a 1 s warm-up of its
    connections. Returns every round of each URL, in order."""
    runs: dict[str, list[Load]] = {name: [] for name in urls}
    for turn in range(rounds):
        order = list(urls.items())
        for name, url in order if turn % 2 == 0 else order[::-1]:
            post_bytes_load(url, body, connections, 1, headers, taskset)
            runs[name].append(post_bytes_load(url, body, connections, seconds, headers, taskset))
    return runs
