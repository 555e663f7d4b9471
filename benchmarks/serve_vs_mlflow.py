"""`mlops-ci serve` vs `mlflow models serve` on the same iris model, same load, one run.

Both servers get the same bounded load from this one process: single-row requests over
keep-alive connections, 1 and 8 concurrent clients (a small asyncio HTTP/1.1 client, so the
load generator costs little of the 2 cores). Prints requests/s and p50/p99 latency for each and
their ratio, plus the raw onnxruntime session time for one row (the floor).

Full MLflow (its scoring server) goes into a virtual environment this script creates under
~/.cache/mlops-ci/bench-mlflow (or --venv); without it the MLflow rows are skipped, with the
reason. Targets (issue 5): >= 10x MLflow's requests/s at 8 clients; p99 <= 2 ms at 1 client and
<= 10 ms at 8.

With --input-log it also measures serve logging every row (monitor.collect): batched (the
default) and monitor.durable (answered once fsynced), as ratios to serve without the log.

Run: python benchmarks/serve_vs_mlflow.py [--requests N] [--venv DIR] [--workers W] [--input-log]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import numpy as np
from _example import packaged_example

ROW = [5.1, 3.5, 1.4, 0.2]
COLUMNS = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
BARE = "bare FastAPI + ORT"


@dataclass
class Result:
    server: str
    clients: int
    requests: int
    seconds: float
    latencies_ms: list[float]

    @property
    def rps(self) -> float:
        return self.requests / self.seconds

    def pct(self, q: float) -> float:
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def packaged_model(work: Path) -> tuple[Path, Path]:
    """The example's package folder, and its MLflow model folder for `mlflow models serve`."""
    package_dir, reg, record = packaged_example(work)
    return package_dir, reg.download_model(record.source, work / "mlflow-model")


def mlflow_venv(venv: Path) -> tuple[Path | None, str]:
    """A venv with full MLflow and this environment's scikit-learn; (bin, '') or (None, why)."""
    bin_dir = venv / "bin"
    if (bin_dir / "mlflow").exists():
        return bin_dir, ""
    pins = [
        f"mlflow=={metadata.version('mlflow-skinny')}",
        *(f"{d}=={metadata.version(d)}" for d in ("scikit-learn", "numpy", "pandas", "skops")),
    ]
    print(f"creating {venv} with {' '.join(pins)} (once; takes a few minutes)", flush=True)
    try:
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(bin_dir / "pip"), "install", "-q", *pins], check=True, timeout=1200)
    except (subprocess.SubprocessError, OSError) as err:
        return None, f"could not install MLflow: {err}"
    return bin_dir, ""


def start(cmd: list[str], url: str, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "wb") as fh:
        proc = subprocess.Popen(cmd, env=env, stdout=fh, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{cmd[0]} exited: {log.read_text()[-2000:]}")
        try:
            urllib.request.urlopen(url, timeout=1)
            return proc
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError(f"{' '.join(cmd)} did not answer {url} in 120 s")


async def _client(
    port: int, request: bytes, deadline_count: list[int], latencies: list[float]
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while deadline_count[0] > 0:
            deadline_count[0] -= 1
            started = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            body = await reader.readexactly(length)
            latencies.append((time.perf_counter() - started) * 1000)
            if not head.startswith(b"HTTP/1.1 200"):
                raise RuntimeError(f"{head[:40]!r}: {body[:200]!r}")
    finally:
        writer.close()


def load(
    server: str, port: int, path: str, payload: dict[str, object], clients: int, n: int
) -> Result:
    body = json.dumps(payload).encode()
    request = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body

    async def run(count: int) -> tuple[float, list[float]]:
        left, latencies = [count], []
        started = time.perf_counter()
        await asyncio.gather(*(_client(port, request, left, latencies) for _ in range(clients)))
        return time.perf_counter() - started, latencies

    asyncio.run(run(min(500, n)))  # warm-up: connections, caches, JIT-free but lazy imports
    seconds, latencies = asyncio.run(run(n))
    return Result(server, clients, len(latencies), seconds, latencies)


def onnx_floor(folder: Path, runs: int = 20_000) -> tuple[float, float]:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    sess = ort.InferenceSession(
        str(folder / "model.onnx"), options, providers=["CPUExecutionProvider"]
    )
    x = np.asarray([ROW], np.float32)
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        sess.run(None, {"input": x})
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times), sorted(times)[int(0.99 * runs)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=5000, help="requests per measurement")
    parser.add_argument("--venv", type=Path, default=Path.home() / ".cache/mlops-ci/bench-mlflow")
    parser.add_argument("--workers", type=int, default=1, help="mlops-ci serve workers")
    parser.add_argument(
        "--no-access-log", action="store_true", help="turn serve's JSON access log off"
    )
    parser.add_argument("--rounds", type=int, default=3, help="alternated rounds; medians count")
    parser.add_argument(
        "--input-log",
        action="store_true",
        help="also measure serve logging every row (monitor.collect), batched and durable",
    )
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-serve-"))
    package_dir, mlflow_model = packaged_model(work)
    floor_p50, floor_p99 = onnx_floor(package_dir)
    results: list[Result] = []
    procs = []
    try:
        port = free_port()
        env = {**os.environ}
        serve_cmd = [sys.executable, "-m", "mlops_ci", "serve", "--model-dir", str(package_dir),
                     "--port", str(port), "--workers", str(args.workers)]  # fmt: skip
        if args.no_access_log:
            (work / "cfg").mkdir()
            cfg = work / "cfg" / "mlops.yaml"
            src = (work / "iris" / "mlops.yaml").read_text()
            cfg.write_text(src + "serve: {access_log: false}\n")
            serve_cmd += ["-c", str(cfg)]
        bare_cmd = [sys.executable, str(Path(__file__).with_name("_bare_app.py")),
                    str(package_dir)]  # fmt: skip
        for _ in range(args.rounds):  # alternated, so drift of the machine hits both alike
            bport = free_port()
            procs.append(
                start(
                    [*bare_cmd, str(bport)],
                    f"http://127.0.0.1:{bport}/v2/health/ready",
                    env,
                    work / "bare.log",
                )  # fmt: skip
            )
            for clients in (1, 8):
                results.append(
                    load(BARE, bport, "/score", {"inputs": [ROW]}, clients, args.requests)
                )
            procs[-1].terminate()
            port = free_port()
            serve_cmd[serve_cmd.index("--port") + 1] = str(port)
            procs.append(
                start(serve_cmd, f"http://127.0.0.1:{port}/v2/health/ready", env, work / "s.log")
            )
            for clients in (1, 8):
                results.append(
                    load(
                        "mlops-ci serve", port, "/score", {"inputs": [ROW]}, clients, args.requests
                    )
                )
            procs[-1].terminate()
        if args.input_log:  # the same server logging every row: batched, then durable
            for label, durable in (("serve + input log", "false"), ("serve + durable log", "true")):
                lport = free_port()
                lcfg = work / f"cfg-{durable}" / "mlops.yaml"
                lcfg.parent.mkdir()
                lcfg.write_text(
                    (work / "iris" / "mlops.yaml").read_text()
                    + "serve: {access_log: false}\n"
                    + f"monitor: {{collect: true, log_dir: {work / ('logs-' + durable)}, "
                    + f"durable: {durable}}}\n"
                )
                cmd = [sys.executable, "-m", "mlops_ci", "serve", "--model-dir", str(package_dir),
                       "--port", str(lport), "-c", str(lcfg)]  # fmt: skip
                procs.append(
                    start(cmd, f"http://127.0.0.1:{lport}/v2/health/ready", env, work / "l.log")
                )
                for clients in (1, 8):
                    results.append(
                        load(label, lport, "/score", {"inputs": [ROW]}, clients, args.requests)
                    )
                procs[-1].terminate()

        bin_dir, why = mlflow_venv(args.venv)
        if bin_dir is None:
            print(f"mlflow models serve: skipped: {why}")
        else:
            mport = free_port()
            menv = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
            menv.pop("MLFLOW_TRACKING_URI", None)
            mcmd = [str(bin_dir / "mlflow"), "models", "serve", "-m", str(mlflow_model),
                    "-p", str(mport), "-h", "127.0.0.1", "--env-manager", "local"]  # fmt: skip
            procs.append(start(mcmd, f"http://127.0.0.1:{mport}/ping", menv, work / "mlflow.log"))
            payload = {"dataframe_split": {"columns": COLUMNS, "data": [ROW]}}
            for clients in (1, 8):
                n = max(500, args.requests // 5)  # MLflow is slower: fewer requests, same shape
                results.append(
                    load("mlflow models serve", mport, "/invocations", payload, clients, n)
                )
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(30)

    print(
        f"\nraw onnxruntime session, one row: p50 {floor_p50 * 1000:.1f} µs, "
        f"p99 {floor_p99 * 1000:.1f} µs (= {1000 / floor_p50:,.0f} rows/s on one core)"
    )
    print(f"\n{'server':<22}{'clients':>8}{'requests':>10}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}")
    for r in results:
        print(
            f"{r.server:<22}{r.clients:>8}{r.requests:>10}{r.rps:>10,.0f}{r.pct(0.5):>9.2f}{r.pct(0.99):>9.2f}"
        )
    rps, p99 = medians(results)
    ours = {c: rps[("mlops-ci serve", c)] for c in (1, 8)}
    for (server, clients), value in rps.items():
        if server.startswith("serve + "):
            print(f"{server} at {clients} client(s): {value / ours[clients]:.2f}x "
                  "serve without the log")  # fmt: skip
    log = "off" if args.no_access_log else "on"
    for clients in (1, 8):
        bare = (BARE, clients)
        print(
            f"serve (access log {log}, metrics on) / bare app at {clients} client(s), medians of "
            f"{args.rounds} alternated rounds: {ours[clients] / rps[bare]:.2f}x req/s, p99 "
            f"{p99[('mlops-ci serve', clients)] / p99[bare]:.2f}x (targets >= 0.85x, <= 1.2x)"
        )
        if ("mlflow models serve", clients) in rps:
            ratio = ours[clients] / rps[("mlflow models serve", clients)]
            print(f"throughput ratio at {clients} client(s): {ratio:.1f}x mlflow")
    print(
        f"targets: >= 10x mlflow at 8 clients; p99 {p99[('mlops-ci serve', 1)]:.2f} ms (<= 2) "
        f"at 1 client, {p99[('mlops-ci serve', 8)]:.2f} ms (<= 10) at 8"
    )


def medians(results: list[Result]) -> tuple[dict[tuple[str, int], float], ...]:
    """Median req/s and median p99 per (server, clients) over the rounds."""
    groups: dict[tuple[str, int], list[Result]] = {}
    for r in results:
        groups.setdefault((r.server, r.clients), []).append(r)
    rps = {k: statistics.median(r.rps for r in v) for k, v in groups.items()}
    p99 = {k: statistics.median(r.pct(0.99) for r in v) for k, v in groups.items()}
    return rps, p99


if __name__ == "__main__":
    main()
