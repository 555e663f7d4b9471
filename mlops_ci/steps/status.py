"""status: what runs where — per environment, the alias, the recorded deployment and, for the
local and docker targets, the live split of the serving process or front (``delete-version``
asks it before deleting)."""

from __future__ import annotations

from dataclasses import dataclass

from mlops_ci.config.types import Config, DeployEnv
from mlops_ci.errors import ServiceError
from mlops_ci.registry import ModelRegistry
from mlops_ci.targets import TARGETS, Targets, routed_target


@dataclass(frozen=True)
class EnvStatus:
    env: str
    target: str
    alias: str
    version: str | None  # the version the alias names
    state: str | None  # mlops.deploy.ENV.status on it
    at: str | None
    by: str | None
    url: str | None
    live_split: dict[str, float] | None  # local / docker: what the endpoint routes now
    running: bool | None = None  # local / docker: whether the endpoint runs (None: unknown)


def status(config: Config, registry: ModelRegistry, targets: Targets = TARGETS) -> list[EnvStatus]:
    out = []
    for name, env in config.deploy.items():
        version = registry.get_version_by_alias(config.model.name, env.alias)
        tags = version.tags if version else {}
        prefix = f"mlops.deploy.{name}."
        out.append(
            EnvStatus(
                name,
                env.target,
                env.alias,
                version.version if version else None,
                tags.get(prefix + "status"),
                tags.get(prefix + "at"),
                tags.get(prefix + "by"),
                tags.get(prefix + "url"),
                *_live(config, registry, env, targets),
            )
        )
    return out


def _live(
    config: Config,
    registry: ModelRegistry,
    env: DeployEnv,
    targets: Targets,
) -> tuple[dict[str, float] | None, bool | None]:
    """(the weights the endpoint routes by now, whether it runs): a recorded 'serving' on a
    dead endpoint must not read as serving."""
    target, running = routed_target(config, env, registry, targets)
    if target is None:
        return None, running
    try:
        weights = target.traffic()["weights"]
    except ServiceError:
        return None, True  # running but not answering: the recorded state is all there is
    return weights, True
