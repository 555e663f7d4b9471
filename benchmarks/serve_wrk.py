"""`mlops-ci serve` against the bare FastAPI + onnxruntime app, measured from outside with wrk.

The method of issue 31: the demo's model packaged; `mlops-ci serve --model-dir PKG` (access log
and metrics on, as deployed) and `benchmarks/_bare_app.py` each pinned to CPU 1 (taskset), wrk
(Debian's package) pinned to CPU 0 posting one single-row /score body, the two servers
alternated for --rounds rounds of --seconds at 1, 8 and 32 connections; medians of req/s and
of wrk's p50/p99 (--latency). With --input-log, serve also logs every scored row
(`--collect`, a batched Parquet input log): measured as its own server beside the others.

Targets (issue 31): serve >= 0.9x the bare app's req/s at 1, 8 and 32 connections; p99 <= 1.2x
the bare app's at 8.

Run: python benchmarks/serve_wrk.py [--rounds 3] [--seconds 4] [--input-log]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from _example import packaged_example
from _wrk import alternated, wrk_path
from front_proxies import ready

ROOT = Path(__file__).resolve().parents[1]
ROW = {"inputs": [[5.1, 3.5, 1.4, 0.2]]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--input-log", action="store_true", help="also serve with --collect")
    args = parser.parse_args()
    wrk_path()
    if (os.cpu_count() or 1) < 2:
        sys.exit("needs 2 CPUs: the servers on CPU 1, wrk on CPU 0")
    sys.path.insert(0, str(ROOT))
    from tests.support.serve_helpers import free_port

    work = Path(tempfile.mkdtemp(prefix="bench-serve-wrk-"))
    model_dir = packaged_example(work)[0]
    pin = ["taskset", "-c", "1"]
    serve = [*pin, sys.executable, "-m", "mlops_ci", "serve", "--model-dir", str(model_dir)]
    servers = {
        "serve": [*serve, "--no-collect"],
        "bare": [
            *pin,
            sys.executable,
            str(Path(__file__).with_name("_bare_app.py")),
            str(model_dir),
        ],
    }
    if args.input_log:
        servers["serve+input log"] = [*serve, "--collect", "--log-dir", str(work / "inputs")]
    urls: dict[str, str] = {}
    processes = []
    try:
        for name, argv in servers.items():
            port = free_port()
            argv = [*argv, str(port)] if name == "bare" else [*argv, "--port", str(port)]
            processes.append(
                subprocess.Popen(
                    argv, cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
                )
            )
            urls[name] = f"http://127.0.0.1:{port}"
        for url in urls.values():
            ready(url)
        print(
            f"single-row /score, wrk on CPU 0, each server on CPU 1, medians of {args.rounds} "
            f"alternated rounds of {args.seconds:g} s"
        )
        for connections in (1, 8, 32):
            scores = {name: f"{url}/score" for name, url in urls.items()}
            runs = alternated(scores, ROW, connections, args.rounds, args.seconds, taskset="0")
            bare_rps = statistics.median(r.rps for r in runs["bare"])
            bare_p99 = statistics.median(r.p99_ms for r in runs["bare"])
            for name, loads in runs.items():
                rps = statistics.median(r.rps for r in loads)
                p50 = statistics.median(r.p50_ms for r in loads)
                p99 = statistics.median(r.p99_ms for r in loads)
                print(
                    f"{connections:>2} connection(s) {name:>15}: {rps:7,.0f} req/s "
                    f"({rps / bare_rps:.2f}x bare), p50 {p50:.2f} ms, p99 {p99:.2f} ms "
                    f"({p99 / bare_p99:.2f}x), errors {sum(r.errors for r in loads)}"
                )
        print("targets: serve >= 0.9x bare at 1, 8 and 32 connections; p99 <= 1.2x bare at 8")
    finally:
        for process in processes:
            process.terminate()
            process.wait(20)


if __name__ == "__main__":
    main()
