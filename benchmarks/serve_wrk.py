"""`mlops-ci serve` against the bare FastAPI + onnxruntime app, measured from outside with wrk.

The method of issue 31: each model packaged; `mlops-ci serve --model-dir PKG` (access log and
metrics on, as deployed), with adaptive batching off and on (`--max-batch-size`), and
`benchmarks/_bare_app.py` (one model call per request) each pinned to CPU 1 (taskset); wrk
(Debian's package) pinned to CPU 0 posting one single-row body; the servers alternated for
--rounds rounds of --seconds at 1, 8, 32 and 64 connections; medians of req/s and of wrk's
p50/p99 (--latency). With --input-log, serve also logs every scored row (`--collect`, a
batched Parquet input log): measured as its own server beside the others.

Models (issue 42): the demo's (iris, 4 features), an MLP whose model call dominates the
request (256 inputs, two hidden layers of 2,048) and a 300-tree random forest on 20 features
(benchmarks/_heavy_models.py). Endpoints: /score, v2 infer with a JSON tensor, and v2 infer
with the binary tensor extension (a JSON header, then the float32 row).

Targets: serve >= 0.9x the bare app's req/s on /score and v2 (JSON and binary) at 1, 8 and 32
connections, p99 <= 1.2x the bare app's at 8 (issues 31, 42); on the MLP, batched >= 2x the
bare app at 32 connections with p99 <= the bare app's, and >= 0.95x at 1; on the forest and
the demo model, batched >= 0.95x serve unbatched at every count (issue 42).

Run: python benchmarks/serve_wrk.py [--rounds 3] [--seconds 4] [--input-log]
       [--models demo,mlp,forest] [--endpoints score,v2,v2-binary] [--connections 1,8,32,64]
       [--no-batched] [--max-batch-size 32] [--max-delay-ms 2] [--work DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from _wrk import Load, alternated_bytes, wrk_path

MODELS = ("demo", "mlp", "forest")
ENDPOINTS = ("score", "v2", "v2-binary")
DEMO_ROW = [5.1, 3.5, 1.4, 0.2]
JSON_HEADERS = {"content-type": "application/json"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--input-log", action="store_true", help="also serve with --collect")
    parser.add_argument("--models", type=_names(MODELS), default=list(MODELS))
    parser.add_argument("--endpoints", type=_names(ENDPOINTS), default=list(ENDPOINTS))
    parser.add_argument("--connections", type=_counts, default=[1, 8, 32, 64])
    parser.add_argument(
        "--batched",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also serve with batching on (--no-batched: bare and serve only)",
    )
    parser.add_argument("--max-batch-size", type=int, default=32, help="of the batched server")
    parser.add_argument("--max-delay-ms", type=float, default=2.0, help="of the batched server")
    parser.add_argument("--work", type=Path, help="keep (and reuse) the packaged models here")
    args = parser.parse_args()
    wrk_path()
    if (os.cpu_count() or 1) < 2:
        sys.exit("needs 2 CPUs: the servers on CPU 1, wrk on CPU 0")
    work = args.work or Path(tempfile.mkdtemp(prefix="bench-serve-wrk-"))
    work.mkdir(parents=True, exist_ok=True)
    batching = args.batched and _batching_available()
    if args.batched and not batching:
        print("note: this mlops-ci serve has no --max-batch-size: the batched rows are skipped")
    print(
        f"single-row bodies, wrk on CPU 0, each server on CPU 1, medians of {args.rounds} "
        f"alternated rounds of {args.seconds:g} s; batched: --max-batch-size "
        f"{args.max_batch_size} --max-delay-ms {args.max_delay_ms:g}"
    )
    for kind in args.models:
        model_dir = _package(work, kind)
        name = json.loads((model_dir / "manifest.json").read_text())["name"]
        servers = _servers(model_dir, work, args, batching)
        with _running(servers, work) as urls:
            row = DEMO_ROW if kind == "demo" else _one_row(kind)
            for endpoint in args.endpoints:
                path, body, headers = request_for(endpoint, name, row)
                targets = {server: url + path for server, url in urls.items()}
                for url in targets.values():
                    _check(url, body, headers)
                for connections in args.connections:
                    before = {n: batch_totals(u) for n, u in urls.items() if "batched" in n}
                    runs = alternated_bytes(
                        targets, body, headers, connections, args.rounds, args.seconds, "0"
                    )
                    after = {n: batch_totals(u) for n, u in urls.items() if "batched" in n}
                    _report(kind, endpoint, connections, runs, before, after)
    print(
        "targets: serve >= 0.9x bare on score, v2 and v2-binary at 1, 8 and 32 connections, "
        "p99 <= 1.2x bare at 8; mlp batched >= 2x bare at 32 with p99 <= bare's, >= 0.95x at 1; "
        "forest and demo batched >= 0.95x serve at every count"
    )


def request_for(endpoint: str, name: str, row: list[float]) -> tuple[str, bytes, dict[str, str]]:
    """(path, body, headers) of one single-row request to ``endpoint`` of model ``name``."""
    if endpoint == "score":
        return "/score", json.dumps({"inputs": [row]}).encode(), JSON_HEADERS
    tensor: dict[str, object] = {"name": "input", "shape": [1, len(row)], "datatype": "FP32"}
    path = f"/v2/models/{name}/infer"
    if endpoint == "v2":
        return path, json.dumps({"inputs": [{**tensor, "data": row}]}).encode(), JSON_HEADERS
    raw = struct.pack(f"<{len(row)}f", *row)
    tensor["parameters"] = {"binary_data_size": len(raw)}
    header = json.dumps({"inputs": [tensor]}).encode()
    headers = {
        "content-type": "application/octet-stream",
        "inference-header-content-length": str(len(header)),
    }
    return path, header + raw, headers


def batch_totals(url: str) -> tuple[float, float]:
    """(rows, model calls) of adaptive batching so far: the sums of ``mlops_batch_size``'s
    ``_sum`` and ``_count`` over every version in serve's /metrics."""
    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as answer:
        text = answer.read().decode()
    totals = []
    for part in ("sum", "count"):
        found = re.findall(rf"^mlops_batch_size_{part}\{{[^}}]*\}} (\S+)$", text, re.M)
        totals.append(sum(float(v) for v in found))
    return totals[0], totals[1]


def _report(
    kind: str,
    endpoint: str,
    connections: int,
    runs: dict[str, list[Load]],
    before: dict[str, tuple[float, float]],
    after: dict[str, tuple[float, float]],
) -> None:
    def med(name: str, field: str) -> float:
        return statistics.median(getattr(r, field) for r in runs[name])

    bare = {f: med("bare", f) for f in ("rps", "p50_ms", "p99_ms")}
    for name, loads in runs.items():
        rps, p50, p99 = (med(name, f) for f in ("rps", "p50_ms", "p99_ms"))
        line = (
            f"{kind:>6} {endpoint:>9} {connections:>2} conn {name:>15}: {rps:7,.0f} req/s "
            f"({rps / bare['rps']:.2f}x bare), p50 {p50:6.2f} ms ({p50 / bare['p50_ms']:.2f}x), "
            f"p99 {p99:6.2f} ms ({p99 / bare['p99_ms']:.2f}x), "
            f"errors {sum(r.errors for r in loads)}"
        )
        if name in after:
            rows, calls = (a - b for a, b in zip(after[name], before[name], strict=True))
            line += f", mean batch {rows / calls:.2f}" if calls else ", mean batch -"
            if "serve" in runs:
                line += f", {rps / med('serve', 'rps'):.2f}x serve"
        print(line, flush=True)


def _servers(
    model_dir: Path, work: Path, args: argparse.Namespace, batching: bool
) -> dict[str, list[str]]:
    pin = ["taskset", "-c", "1"]
    serve = [*pin, sys.executable, "-m", "mlops_ci", "serve", "--model-dir", str(model_dir)]
    bare = Path(__file__).with_name("_bare_app.py")
    servers = {"bare": [*pin, sys.executable, str(bare), str(model_dir)], "serve": [*serve]}
    servers["serve"].append("--no-collect")
    if batching:
        servers["serve batched"] = [
            *serve,
            "--no-collect",
            "--max-batch-size",
            str(args.max_batch_size),
            "--max-delay-ms",
            f"{args.max_delay_ms:g}",
        ]
    if args.input_log:
        servers["serve+input log"] = [*serve, "--collect", "--log-dir", str(work / "inputs")]
    return servers


class _running:
    """The servers started (each on a free loopback port), ready, and stopped on exit."""

    def __init__(self, servers: dict[str, list[str]], cwd: Path) -> None:
        self.servers, self.cwd = servers, cwd
        self.processes: list[subprocess.Popen[bytes]] = []

    def __enter__(self) -> dict[str, str]:
        urls = {}
        for name, argv in self.servers.items():
            port = _free_port()
            argv = [*argv, str(port)] if name == "bare" else [*argv, "--port", str(port)]
            self.processes.append(
                subprocess.Popen(
                    argv, cwd=self.cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
                )
            )
            urls[name] = f"http://127.0.0.1:{port}"
        for url in urls.values():
            _ready(url)
        return urls

    def __exit__(self, *exc: object) -> None:
        for process in self.processes:
            process.terminate()
            process.wait(20)


def _package(work: Path, kind: str) -> Path:
    """The package folder of ``kind``, packaged under ``work`` unless it already is."""
    found = sorted((work / ("iris" if kind == "demo" else kind)).glob(".mlops/package/*/model"))
    if found:
        return found[-1]
    if kind == "demo":
        from _example import packaged_example

        return packaged_example(work)[0]
    from _heavy_models import packaged_model

    return packaged_model(work, kind)


def _one_row(kind: str) -> list[float]:
    from _heavy_models import one_row

    return one_row(kind)


def _batching_available() -> bool:
    done = subprocess.run(
        [sys.executable, "-m", "mlops_ci", "serve", "--help"], capture_output=True, text=True
    )
    return "--max-batch-size" in done.stdout


def _check(url: str, body: bytes, headers: dict[str, str]) -> None:
    """One request answered 200, or the benchmark stops saying what the server said."""
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30):
            return
    except urllib.error.HTTPError as err:
        sys.exit(f"{url} answered {err.code}: {err.read()[:300]!r}")


def _ready(url: str) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/v2/health/ready", timeout=2) as answer:
                if answer.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    sys.exit(f"{url} did not get ready")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _names(allowed: tuple[str, ...]) -> Callable[[str], list[str]]:
    def parse(text: str) -> list[str]:
        names = [n.strip() for n in text.split(",") if n.strip()]
        wrong = [n for n in names if n not in allowed]
        if wrong or not names:
            raise argparse.ArgumentTypeError(f"choose from {','.join(allowed)}")
        return names

    return parse


def _counts(text: str) -> list[int]:
    return [int(n) for n in text.split(",")]


if __name__ == "__main__":
    main()
