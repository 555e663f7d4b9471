"""The docker target: the packaged image as a container, through the Docker SDK.

One container per environment (``mlops-ci-NAME-ENV``), the port published on the host, the
image's HEALTHCHECK waited for, and the configured restart policy. A new version replaces the
old container: the old one is stopped to free the port and started again if the new one does
not become healthy. Without a reachable engine the deployment is skipped with the reason.
"""

from __future__ import annotations

import time
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
    if not _healthy(container):
        container.remove(force=True)
        for previous in old:
            previous.start()
        raise ServiceError(f"docker: {image} did not become healthy; the previous one is back")
    for previous in old:
        previous.remove()
    return ContainerResult("running", spec["name"], image, container_id=container.id)


def _healthy(container: Any, timeout: float = 120) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        container.reload()
        health = container.attrs.get("State", {}).get("Health", {}).get("Status")
        if health == "healthy":
            return True
        if health == "unhealthy" or container.status == "exited":
            return False
        time.sleep(1)
    return False
