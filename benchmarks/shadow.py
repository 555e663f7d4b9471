"""What a 100 % shadow of the same model costs the primary `mlops-ci serve` answers (issue 41).

The method of serve_wrk.py (issue 31): the demo's model packaged (`_example.packaged_example`);
two servers, each pinned to CPU 1 (taskset), both logging every scored row (`--collect`, each
its own --log-dir), alternated for --rounds rounds of --seconds, the order reversed every other
round, each run after a 1 s warm-up; medians of req/s, p50 and p99:
  - baseline: `mlops-ci serve --model-dir PKG --collect`;
  - shadow:   the same with `--shadow PKG2=100`, PKG2 a copy of PKG whose manifest says another
    version. serve refuses a folder as its own shadow (a shadow is another version) and
    packaged_example makes one version, so the copy's manifest.json gets the next version
    number; its `sha256` is the digest of its file list, which leaves manifest.json out, so
    nothing else changes (the copy is checked with `read_spec`, as serve loads it).

Two loads, one single-row /score body:
  (b) saturation: wrk (Debian's package) pinned to CPU 0 at 8 connections, as serve_wrk.py;
      the baseline's median req/s there is the service's capacity.
  (a) half that capacity: wrk cannot hold a rate and Debian has no wrk2, so this script paces
      its own client, pinned to CPU 0 (this process, once the servers run): one asyncio event
      loop, 8 keep-alive HTTP/1.1 connections on raw sockets; request i is due at
      start + i / rate, taken by whichever connection is free, sent at its due time (or at
      once when late) and timed from its due time, not from when it was sent, so a server
      that falls behind is charged its queue (wrk2's correction of coordinated omission).

The shadow's rows come from its Prometheus counters (`mlops_shadow_rows_total`,
`mlops_shadow_dropped_total` of the copy's version), read before each measured run and after
it once the shadow's queue has drained (the counters stop moving), which also keeps one
server's leftover shadow work out of the next server's run on the same CPU.

Targets (issue 41): below saturation the primary's p99 <= 1.15x and req/s >= 0.9x the
baseline's, no shadow row dropped; at saturation the dropped rows and the share scored are
reported.

Run: python benchmarks/shadow.py [--rounds 3] [--seconds 4]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import httpx
from _example import packaged_example
from _wrk import Load, post_load, wrk_path
from front_proxies import ready

ROOT = Path(__file__).resolve().parents[1]
ROW = {"inputs": [[5.1, 3.5, 1.4, 0.2]]}
CONNECTIONS = 8
_COUNTER = re.compile(r"^(mlops_shadow_rows_total|mlops_shadow_dropped_total)\{([^}]*)\} (\S+)$")


def shadow_copy(model_dir: Path, work: Path) -> tuple[Path, str, str]:
    """(the copy, the primary's version, the copy's version): ``model_dir`` copied with the
    next version number in its manifest."""
    from mlops_ci.serve.model import read_spec

    primary = read_spec(model_dir)
    copy = work / "shadow-model"
    shutil.copytree(primary.folder, copy)
    manifest = copy / "manifest.json"
    record = json.loads(manifest.read_text())
    version = str(record.get("version", "1"))
    record["version"] = str(int(version) + 1) if version.isdigit() else f"{version}-shadow"
    manifest.write_text(json.dumps(record, indent=2))
    spec = read_spec(copy)
    assert spec.version != primary.version and spec.sha256 == primary.sha256
    return copy, primary.version, spec.version


def shadow_counts(url: str, version: str) -> tuple[float, float]:
    """(rows scored, rows dropped) by the shadow ``version``, from /metrics."""
    counts = {"mlops_shadow_rows_total": 0.0, "mlops_shadow_dropped_total": 0.0}
    for line in httpx.get(f"{url}/metrics", timeout=10).text.splitlines():
        if (m := _COUNTER.match(line)) and f'version="{version}"' in m.group(2):
            counts[m.group(1)] += float(m.group(3))
    return counts["mlops_shadow_rows_total"], counts["mlops_shadow_dropped_total"]


def drained(url: str, version: str) -> tuple[float, float]:
    """The shadow's counts once they stop moving (its queue is empty), at most 30 s on."""
    last = shadow_counts(url, version)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        time.sleep(0.3)
        now = shadow_counts(url, version)
        if now == last:
            return now
        last = now
    sys.exit(f"{url}: the shadow's counters still move 30 s after the load")


async def _paced(url: str, rate: float, seconds: float, connections: int) -> Load:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    body = json.dumps(ROW).encode()
    request = (
        f"POST {parts.path} HTTP/1.1\r\nhost: {host}:{port}\r\n"
        f"content-type: application/json\r\ncontent-length: {len(body)}\r\n\r\n"
    ).encode() + body
    loop = asyncio.get_running_loop()
    total = int(rate * seconds)
    latencies: list[float] = []
    errors = 0
    taken = 0
    opened = [await asyncio.open_connection(host, port) for _ in range(connections)]
    start = loop.time() + 0.01

    async def connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal taken, errors
        while taken < total:
            due = start + taken / rate
            taken += 1
            if (wait := due - loop.time()) > 0:
                await asyncio.sleep(wait)
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = re.search(rb"(?im)^content-length:\s*(\d+)", head)
            if length is None:
                raise SystemExit(f"{url}: an answer without content-length: {head[:200]!r}")
            await reader.readexactly(int(length.group(1)))
            latencies.append(loop.time() - due)
            errors += not head.startswith(b"HTTP/1.1 200")

    try:
        await asyncio.gather(*(connection(r, w) for r, w in opened))
    finally:
        for _, writer in opened:
            writer.close()
    elapsed = loop.time() - start
    cuts = statistics.quantiles(latencies, n=100, method="inclusive")
    return Load(len(latencies) / elapsed, cuts[49] * 1e3, cuts[98] * 1e3, errors, len(latencies))


def paced_load(url: str, rate: float, seconds: float) -> Load:
    """POST ROW to ``url`` at ``rate`` requests/s for ``seconds`` from CONNECTIONS connections
    (see the module's docstring); latency from each request's due time."""
    return asyncio.run(_paced(url, rate, seconds, CONNECTIONS))


def rounds_of(
    urls: dict[str, str],
    load: Callable[[str, float], Load],
    rounds: int,
    seconds: float,
    shadow: tuple[str, str],
) -> tuple[dict[str, list[Load]], tuple[float, float]]:
    """Each URL under ``load`` (url, seconds) for ``rounds`` rounds, the order reversed every
    other round, each run after 1 s of the same load (alternated() of _wrk.py, with the shadow's
    counters read around the measured runs); returns every run, and the rows the ``shadow``
    (name, version) scored and dropped during its measured runs."""
    runs: dict[str, list[Load]] = {name: [] for name in urls}
    scored = dropped = 0.0
    name_of_shadow, version = shadow
    for turn in range(rounds):
        order = list(urls.items())
        for name, url in order if turn % 2 == 0 else order[::-1]:
            load(url, 1)
            if name == name_of_shadow:
                before = drained(url.removesuffix("/score"), version)
            runs[name].append(load(url, seconds))
            if name == name_of_shadow:
                after = drained(url.removesuffix("/score"), version)
                scored += after[0] - before[0]
                dropped += after[1] - before[1]
    return runs, (scored, dropped)


def report(runs: dict[str, list[Load]], baseline: str) -> tuple[float, float]:
    """Print each server's medians; returns the shadow server's (req/s, p99) ratios."""
    base_rps = statistics.median(r.rps for r in runs[baseline])
    base_p99 = statistics.median(r.p99_ms for r in runs[baseline])
    ratios = (1.0, 1.0)
    for name, loads in runs.items():
        rps = statistics.median(r.rps for r in loads)
        p50 = statistics.median(r.p50_ms for r in loads)
        p99 = statistics.median(r.p99_ms for r in loads)
        ratios = (rps / base_rps, p99 / base_p99)
        print(
            f"  {name:>8}: {rps:7,.0f} req/s ({ratios[0]:.2f}x baseline), p50 {p50:.2f} ms, "
            f"p99 {p99:.2f} ms ({ratios[1]:.2f}x), errors {sum(r.errors for r in loads)}"
        )
    return ratios


def shadow_rows(scored: float, dropped: float, loads: list[Load]) -> str:
    offered = scored + dropped
    share = f"{scored / offered:.1%}" if offered else "-"
    return (
        f"shadow rows scored {scored:,.0f}, dropped {dropped:,.0f}: {share} of the "
        f"{offered:,.0f} offered (the load counted {sum(r.requests for r in loads):,} answers)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=4.0)
    args = parser.parse_args()
    wrk_path()
    if (os.cpu_count() or 1) < 2:
        sys.exit("needs 2 CPUs: the servers on CPU 1, wrk and the paced client on CPU 0")
    sys.path.insert(0, str(ROOT))
    from tests.support.serve_helpers import free_port

    work = Path(tempfile.mkdtemp(prefix="bench-shadow-"))
    model_dir = packaged_example(work)[0]
    copy, primary_version, shadow_version = shadow_copy(model_dir, work)
    pin = ["taskset", "-c", "1"]
    serve = [*pin, sys.executable, "-m", "mlops_ci", "serve", "--model-dir", str(model_dir)]
    servers = {
        "baseline": [*serve, "--collect", "--log-dir", str(work / "inputs-baseline")],
        "shadow": [
            *serve,
            "--collect",
            "--log-dir",
            str(work / "inputs-shadow"),
            "--shadow",
            f"{copy}=100",
        ],
    }
    urls: dict[str, str] = {}
    processes = []
    try:
        for name, argv in servers.items():
            port = free_port()
            processes.append(
                subprocess.Popen(
                    [*argv, "--port", str(port)],
                    cwd=work,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
            urls[name] = f"http://127.0.0.1:{port}"
        for url in urls.values():
            ready(url)
        os.sched_setaffinity(0, {0})  # the paced client (this process) beside wrk, on CPU 0
        scores = {name: f"{url}/score" for name, url in urls.items()}
        shadow = ("shadow", shadow_version)
        print(
            f"single-row /score, v{primary_version} primary, the shadow server's shadow "
            f"v{shadow_version} (the same model) on 100 %, both --collect; servers on CPU 1, "
            f"load on CPU 0; medians of {args.rounds} alternated rounds of {args.seconds:g} s"
        )

        def wrk(url: str, seconds: float) -> Load:
            return post_load(url, ROW, CONNECTIONS, seconds, taskset="0")

        saturated, (sat_scored, sat_dropped) = rounds_of(
            scores, wrk, args.rounds, args.seconds, shadow
        )
        capacity = statistics.median(r.rps for r in saturated["baseline"])
        rate = capacity / 2

        def paced(url: str, seconds: float) -> Load:
            return paced_load(url, rate, seconds)

        half, (half_scored, half_dropped) = rounds_of(
            scores, paced, args.rounds, args.seconds, shadow
        )
        print(f"(a) half the baseline's capacity: {rate:,.0f} req/s paced, {CONNECTIONS} conns")
        rps_x, p99_x = report(half, "baseline")
        print(f"  {shadow_rows(half_scored, half_dropped, half['shadow'])}")
        met = rps_x >= 0.9 and p99_x <= 1.15 and half_dropped == 0
        print(
            f"  targets: p99 <= 1.15x ({p99_x:.2f}x), req/s >= 0.9x ({rps_x:.2f}x), "
            f"0 dropped ({half_dropped:,.0f}) [{'met' if met else 'missed'}]"
        )
        print(f"(b) saturation: wrk at {CONNECTIONS} connections")
        report(saturated, "baseline")
        print(f"  {shadow_rows(sat_scored, sat_dropped, saturated['shadow'])}")
    finally:
        for process in processes:
            process.terminate()
            process.wait(20)


if __name__ == "__main__":
    main()
