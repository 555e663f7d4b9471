"""The local target: `mlops-ci serve` as a background process, driven over its admin API.

One process per environment, its pid, port and admin token in ``.mlops/deploy/ENV/service.json``
(readable by the owner only) and its log beside it. A new version is loaded into the running
process at 0 % and the split moved step by step, so the endpoint never goes down during a
rollout; a first deployment starts the process with the version alone.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlops_ci.config.types import Config, DeployEnv
from mlops_ci.errors import ServiceError
from mlops_ci.procs import alive, started
from mlops_ci.records import JobFolder, read_json
from mlops_ci.sandbox import python_argv
from mlops_ci.targets import probes
from mlops_ci.targets.base import Stopped

START_TIMEOUT_S = 90.0


@dataclass(frozen=True)
class Process:
    pid: int
    url: str
    token: str
    log: str
    started: int | None = None  # procs.started: the pid's start, told apart from a reuse


class LocalTarget:
    name = "local"

    def __init__(self, config: Config, env: DeployEnv) -> None:
        self.config = config
        self.env = env
        self.folder = JobFolder(config.root).deploy_state(env.name)
        self.state_path = self.folder / "service.json"

    # --- the process --------------------------------------------------------------------

    def running(self) -> bool:
        return self.process() is not None

    def process(self) -> Process | None:
        """The environment's serving process when it is alive, else None."""
        record = read_json(self.state_path)
        if not isinstance(record, dict) or not isinstance(record.get("pid"), int):
            return None
        pid, when = record["pid"], record.get("started")
        if not alive(pid) or (isinstance(when, int) and started(pid) not in (when, None)):
            return None  # gone, or its pid now names another process
        return Process(pid, record["url"], record["token"], record["log"], when)

    @property
    def url(self) -> str:
        return f"http://{self.env.host}:{self.env.port}"

    def start(self, version: str, package_folder: Path) -> Process:
        """Start serving ``package_folder`` (``version``'s package) alone; wait until ready."""
        if not port_free(self.env.host, self.env.port):
            raise ServiceError(
                f"local target: port {self.env.port} on {self.env.host} is in use "
                f"(deploy.{self.env.name}.port)",
                hint="stop what listens there, or choose another port",
            )
        self.folder.mkdir(parents=True, exist_ok=True)
        token = secrets.token_urlsafe(24)
        log = self.folder / "serve.log"
        command = [
            *python_argv(), "-m", "mlops_ci", "serve",
            "-c", str(self.config.path),
            "--model-dir", str(package_folder),
            "--host", self.env.host, "--port", str(self.env.port),
            "--workers", "1",
            "--state-dir", str(self.folder / "state"),
        ]  # fmt: skip
        env = {**os.environ, self.config.serve.admin_token_env: token}
        with open(log, "ab") as out:
            popen = subprocess.Popen(
                command,
                cwd=self.folder,  # not the project: nothing of it is imported (python_argv)
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # outlives this command; stopped by `stop`
            )
        proc = Process(popen.pid, self.url, token, str(log), started(popen.pid))
        _write_private(self.state_path, proc)
        self._wait_ready(popen, log)
        return proc

    def _wait_ready(self, popen: subprocess.Popen[bytes], log: Path) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if popen.poll() is not None:
                self.state_path.unlink(missing_ok=True)
                tail = log.read_text(errors="replace").strip().splitlines()[-2:]
                raise ServiceError(
                    f"local target: `mlops-ci serve` exited with {popen.returncode}: "
                    f"{' / '.join(tail) if tail else 'no output'}",
                    hint=f"see {log}",
                )
            try:
                with urllib.request.urlopen(f"{self.url}/v2/health/ready", timeout=1) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.2)
        self.stop()
        raise ServiceError(f"local target: {self.url} not ready in {START_TIMEOUT_S:g}s")

    def stop(self, timeout: float = 30.0) -> bool:
        proc = self.process()
        if proc is None:
            self.state_path.unlink(missing_ok=True)
            return False
        os.kill(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while alive(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if alive(proc.pid):
            os.kill(proc.pid, signal.SIGKILL)
        self.state_path.unlink(missing_ok=True)
        return True

    def undeploy(self) -> Stopped:
        """Stop the serving process: which it was, and the versions it served."""
        proc = self.process()
        if proc is None:
            return Stopped()
        versions = list(self.traffic()["versions"])
        self.stop()
        return Stopped([f"`mlops-ci serve` process {proc.pid} on {proc.url}"], versions)

    # --- the admin API --------------------------------------------------------------------

    def traffic(self) -> dict[str, Any]:
        return self._admin("GET", "/admin/traffic")

    def load(self, version: str, package_folder: Path) -> dict[str, Any]:
        """Load ``version``'s package beside the served versions, at 0 %."""
        return self._admin("POST", "/admin/models", {"path": str(package_folder)})

    def unload(self, version: str) -> dict[str, Any]:
        shadow = self._admin("GET", "/admin/shadow").get("shadow")
        if shadow and shadow.get("version") == version:
            self.set_shadow(None)
        return self._admin("DELETE", f"/admin/models/{version}")

    def set_shadow(self, version: str | None, percent: float = 100.0) -> dict[str, Any]:
        if version is None:
            return self._admin("DELETE", "/admin/shadow")
        return self._admin("PUT", "/admin/shadow", {"version": version, "percent": percent})

    def set_split(self, weights: dict[str, float]) -> dict[str, Any]:
        return self._admin("PUT", "/admin/traffic", {"weights": weights})

    def metrics_text(self) -> str:
        return probes.metrics_text(self.url)

    def probe(self, version: str, rows: list[Any]) -> list[int]:
        return probes.probe(self.url, version, rows)

    def _admin(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        proc = self.process()
        if proc is None:
            raise ServiceError(f"local target: no serving process for '{self.env.name}'")
        return probes.admin_call(
            f"{proc.url}{path}", proc.token, method, body, "local target", timeout=60
        )


def port_free(host: str, port: int) -> bool:
    """Whether a server could listen on ``host:port`` now (as uvicorn will, SO_REUSEADDR)."""
    import socket

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def _write_private(path: Path, proc: Process) -> None:
    """service.json holds the admin token: created 0600 (whatever the umask), written whole
    to a temporary file beside it and renamed over it, so no moment shows it to others."""
    data = {
        "pid": proc.pid,
        "started": proc.started,
        "url": proc.url,
        "token": proc.token,
        "log": proc.log,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        os.fchmod(fd, 0o600)  # exactly: a umask may have taken the owner's bits too
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(json.dumps(data, indent=2) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
