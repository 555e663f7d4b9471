"""The docker target: the packaged image as a container, through the Docker SDK.

One container per environment (``mlops-ci-NAME-ENV``), the port published on the host, and the
configured restart policy. Readiness is probed over HTTP from the host (``/v2/health/ready`` on
the published port), which works on every engine: Docker runs the image's HEALTHCHECK, an
engine without a timer (podman without systemd) never does. A new version replaces the old
container: the old one is stopped to free the port and started again if the new one does not
become ready. Without a reachable engine the deployment is skipped with the reason.
"""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

from mlops_ci.config import DeployEnv
from mlops_ci.errors import ServiceError
from mlops_ci.packaging.image import engine

CONTAINER_PORT = 8080


@dataclass(frozen=True)
class ContainerResult:
    status: str  # running | skipped
    name: str
    image: str
    reason: str | None = None
    container_id: str | None = None


def container_name(model: str, env: DeployEnv) -> str:
    return f"mlops-ci-{model}-{env.name}"


def run_spec(model: str, version: str, image: str, env: DeployEnv) -> dict[str, Any]:
    """Keyword arguments of ``containers.run`` for this deployment."""
    policy: dict[str, Any] = {"Name": env.restart_policy}
    if env.restart_policy == "on-failure":
        policy["MaximumRetryCount"] = 5
    return {
        "image": image,
        "name": f"{container_name(model, env)}-v{version}",
        "detach": True,
        "ports": {f"{CONTAINER_PORT}/tcp": (env.host, env.port)},
        "restart_policy": policy,
        "labels": {
            "io.mlops-ci.model.name": model,
            "io.mlops-ci.model.version": version,
            "io.mlops-ci.environment": env.name,
        },
        "read_only": True,
        "security_opt": ["no-new-privileges"],
    }


def deploy_container(model: str, version: str, image: str, env: DeployEnv) -> ContainerResult:
    client, why = engine()
    name = container_name(model, env)
    if client is None:
        return ContainerResult("skipped", name, image, f"no Docker engine: {why}")
    old = client.containers.list(filters={"label": f"io.mlops-ci.environment={env.name}"})
    for container in old:  # free the port; the registry alias still names the old version
        container.stop(timeout=30)
    spec = run_spec(model, version, image, env)
    try:
        container = client.containers.run(**spec)
    except Exception as err:  # the engine's own message names the cause
        for previous in old:
            previous.start()
        raise ServiceError(f"docker: cannot run {image}: {err}") from None
    if not _ready(container, env):
        container.remove(force=True)
        for previous in old:
            previous.start()
        back = all(_ready(previous, env, timeout=60) for previous in old)
        raise ServiceError(
            f"docker: {image} did not become healthy; "
            + ("the previous one is back" if back else "the previous one did not come back")
        )
    for previous in old:
        previous.remove()
    return ContainerResult("running", spec["name"], image, container_id=container.id)


def _ready(container: Any, env: DeployEnv, timeout: float = 120) -> bool:
    """True once the service answers /v2/health/ready on the published port (or Docker's own
    HEALTHCHECK says healthy); False when the container exits or is reported unhealthy."""
    host = "127.0.0.1" if env.host in ("0.0.0.0", "", "::") else env.host
    url = f"http://{host}:{env.port}/v2/health/ready"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        container.reload()
        health = container.attrs.get("State", {}).get("Health", {}).get("Status")
        if health == "healthy":
            return True
        restarted = int(container.attrs.get("RestartCount") or 0) > 0
        if health == "unhealthy" or restarted or container.status in ("exited", "dead"):
            return False  # a container that had to be restarted crashed once already
        try:
            with urllib.request.urlopen(url, timeout=2) as answer:
                if answer.status == 200:
                    return True
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.2)
    return False
