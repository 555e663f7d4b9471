"""A real `mlops-ci serve` process on loopback, and the packaged models the serve tests use."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

ADMIN_TOKEN = "test-admin-token-0123456789"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class ServeProcess:
    url: str
    process: subprocess.Popen[str]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text()

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        return self.process.wait(timeout)


@contextmanager
def serving(
    *args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 60
) -> Iterator[ServeProcess]:
    """Start `mlops-ci serve ARGS --port P` and wait until /v2/health/ready answers."""
    port = free_port()
    log_path = cwd / f"serve-{port}.log"
    full_env = {**os.environ, "MLOPS_ADMIN_TOKEN": ADMIN_TOKEN, **(env or {})}
    full_env.pop("MLFLOW_TRACKING_URI", None)
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "mlops_ci", "serve", *args, "--port", str(port)],
            cwd=cwd,
            env=full_env,
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
        )
    server = ServeProcess(f"http://127.0.0.1:{port}", process, log_path)
    try:
        _wait_ready(server, timeout)
        yield server
    finally:
        server.stop()


def _wait_ready(server: ServeProcess, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"serve exited with {server.process.returncode}:\n{server.log()}")
        try:
            if httpx.get(f"{server.url}/v2/health/ready", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"serve did not become ready in {timeout}s:\n{server.log()}")


ROOT = Path(__file__).resolve().parents[2]


def schemathesis(url: str, tmp_path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    st = Path(sys.executable).with_name("st")
    return subprocess.run(
        [
            str(st),
            "--config-file",
            str(ROOT / "tests" / "schemathesis.toml"),
            "run",
            f"{url}/openapi.json",
            "--max-examples",
            "25",
            "--seed",
            "20261125",
            "--report",
            "ndjson",
            "--report-dir",
            str(tmp_path / "st"),
            *extra,
        ],
        cwd=tmp_path,  # its .schemathesis/ cache: one per test, never in the checkout
        env={**os.environ, "SCHEMATHESIS_HOOKS": "tests.support.st_hooks", "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=400,
    )


def assert_conforms(run: subprocess.CompletedProcess[str]) -> None:
    """Schemathesis found no failure (its exit code, and its summary says so)."""
    failures = run.stdout.split("FAILURES")[-1].split("WARNINGS")[0]
    shown = "\n".join(line[:300] for line in failures.splitlines())  # bodies can be long
    assert run.returncode == 0, shown[-8000:]
    assert "passed" in run.stdout and "failures" not in run.stdout.split("SUMMARY")[-1]
