"""A real `mlflow server` on loopback (SQLite backend, local artifact root; with MLflow's own
basic authentication if asked), and a fault proxy in front of it that can answer 5xx, lose
answers or be slow."""

from __future__ import annotations

import base64
import http.client
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from tests.support.serve_helpers import free_port
from tests.support.store import seed_store


@contextmanager
def mlflow_server(folder: Path, admin: tuple[str, str] | None = None) -> Iterator[str]:
    """Start `mlflow server` (the full mlflow package) and stop it, with its workers, after.
    With ``admin`` (user, password), MLflow's own authentication (``--app-name basic-auth``):
    every API call but /health needs a user; ``admin`` is its administrator (MLflow ships no
    default password), and :func:`create_user` adds others."""
    port = free_port()
    seed_store(folder / "mlflow.db")
    auth: list[str] = []
    auth_env: dict[str, str] = {}
    if admin is not None:
        # MLflow's basic_auth.ini with our admin and its own user store beside the backend;
        # the Flask secret signs the CSRF tokens of its login forms (it refuses to start
        # without one).
        (folder / "basic_auth.ini").write_text(
            "[mlflow]\n"
            "default_permission = READ\n"
            f"database_uri = sqlite:///{folder / 'basic_auth.db'}\n"
            f"admin_username = {admin[0]}\n"
            f"admin_password = {admin[1]}\n"
            "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
        )
        auth = ["--app-name", "basic-auth"]
        auth_env = {
            "MLFLOW_AUTH_CONFIG_PATH": str(folder / "basic_auth.ini"),
            "MLFLOW_FLASK_SERVER_SECRET_KEY": os.urandom(16).hex(),
        }
    log = open(folder / "mlflow-server.log", "wb")  # noqa: SIM115 - closed below
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            *auth,
            "--backend-store-uri",
            f"sqlite:///{folder / 'mlflow.db'}",
            "--default-artifact-root",
            str(folder / "artifacts"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "2",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        # MLflow >= 3.5 starts Huey job consumers beside the server (about ten processes of
        # 240 MB, polling all the time): the registry needs none of them, and on a 2-core CI
        # machine they took a core from every test that ran beside a server.
        env={
            **{k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")},
            "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
            **auth_env,
        },
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            if process.poll() is not None:
                raise RuntimeError((folder / "mlflow-server.log").read_text()[-3000:])
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("mlflow server did not answer /health in 120 s")
            time.sleep(0.3)
        yield url
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)
        log.close()


def create_user(url: str, admin: tuple[str, str], user: tuple[str, str]) -> None:
    """Add ``user`` (name, password) to a basic-auth server, as its ``admin``: through the API
    an operator uses (POST users/create), the credentials in a Basic header."""
    request = urllib.request.Request(
        f"{url}/api/2.0/mlflow/users/create",
        data=json.dumps({"username": user[0], "password": user[1]}).encode(),
        headers={
            "Content-Type": "application/json",
            "Authorization": "Basic " + base64.b64encode(":".join(admin).encode()).decode(),
        },
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=30) as answer:
        assert answer.status == 200, answer.read()


@dataclass
class Fault:
    method: str
    path: str  # regular expression on the request path
    action: str  # "503": answer 503 without forwarding; "lose": forward, then answer 503;
    #              "slow:S": forward after S seconds
    times: int = 1


@dataclass
class ProxyState:
    faults: list[Fault] = field(default_factory=list)
    seen: list[tuple[str, str, int]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def take(self, method: str, path: str) -> Fault | None:
        with self.lock:
            for fault in self.faults:
                if fault.method == method and re.search(fault.path, path) and fault.times > 0:
                    fault.times -= 1
                    return fault
        return None


@contextmanager
def fault_proxy(target: str) -> Iterator[tuple[str, ProxyState]]:
    """An HTTP proxy to ``target`` whose faults the test programs."""
    state = ProxyState()
    host, port = target.removeprefix("http://").split(":")

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _relay(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else None
            fault = state.take(self.command, self.path)
            if fault is not None and fault.action.startswith("slow:"):
                time.sleep(float(fault.action.split(":")[1]))
            if fault is not None and fault.action == "503":
                return self._send(503, b'{"error_code": "TEMPORARILY_UNAVAILABLE"}', fault)
            upstream = http.client.HTTPConnection(host, int(port), timeout=60)
            headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
            upstream.request(self.command, self.path, body=body, headers=headers)
            answer = upstream.getresponse()
            data = answer.read()
            upstream.close()
            if fault is not None and fault.action == "lose":  # done upstream, answer lost
                return self._send(503, b'{"error_code": "TEMPORARILY_UNAVAILABLE"}', fault)
            self._send(answer.status, data, None, answer.getheader("Content-Type"))

        def _send(
            self, status: int, data: bytes, fault: Fault | None, kind: str | None = None
        ) -> None:
            state.seen.append((self.command, self.path, status))
            try:
                self.send_response(status)
                self.send_header("Content-Type", kind or "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except OSError:  # the client gave up (a timeout): nothing to answer
                pass

        do_GET = do_POST = do_PATCH = do_DELETE = _relay

    class Quiet(ThreadingHTTPServer):
        def handle_error(self, request: Any, client_address: Any) -> None:
            pass  # a client that timed out, or an upstream that is gone: part of the test

    server = Quiet(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", state
    finally:
        server.shutdown()
