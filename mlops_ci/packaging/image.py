"""Build (and push) the serving image with the Docker SDK, only where an engine answers.

Without a reachable engine the result says so and nothing pretends to have been built.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlops_ci.errors import ServiceError

if TYPE_CHECKING:
    from mlops_ci.config.types import Config


@dataclass(frozen=True)
class ImageResult:
    tag: str
    status: str  # built | pushed | skipped
    reason: str | None = None
    image_id: str | None = None
    seconds: float | None = None  # how long the build (and the push) took


def image_tag(config: Config, name: str, version: str) -> str:
    """The serving image of a version: ``package.image`` with {name} and {version} filled in."""
    return (config.package.image or "mlops-ci/{name}:{version}").format(name=name, version=version)


def engine() -> tuple[Any | None, str | None]:
    """(a docker client that answered a ping, None), or (None, why none is reachable)."""
    import docker
    from docker.errors import DockerException

    try:
        client = docker.from_env(timeout=10)
        client.ping()
    except DockerException as err:
        return None, str(err).splitlines()[0][:200]
    return client, None


def build_image(context: Path, tag: str, push: bool) -> ImageResult:
    client, why = engine()
    if client is None:
        where = os.environ.get("DOCKER_HOST", "the default socket")
        return ImageResult(tag, "skipped", f"no Docker engine reachable at {where} ({why})")
    from docker.errors import APIError, BuildError

    started = time.monotonic()
    try:
        image, _logs = client.images.build(path=str(context), tag=tag, rm=True, pull=False)
    except BuildError as err:
        last = next(
            (e.get("error") or e.get("stream", "") for e in reversed(list(err.build_log))), ""
        )
        raise ServiceError(
            f"docker build of {tag} failed: {str(last).strip() or err.msg}"
        ) from None
    except APIError as err:
        raise ServiceError(
            f"the Docker engine refused to build {tag}: {err.explanation or err}"
        ) from None
    if not push:
        return ImageResult(tag, "built", image_id=image.id, seconds=time.monotonic() - started)
    repository, _, version = tag.rpartition(":")
    for line in client.images.push(repository, tag=version, stream=True, decode=True):
        if "error" in line:
            raise ServiceError(f"docker push of {tag} failed: {line['error']}")
    return ImageResult(tag, "pushed", image_id=image.id, seconds=time.monotonic() - started)
