"""status: what runs where — per environment, the alias, the recorded deployment and, for the
local and docker targets, the live split of the serving process or front; and the guard that
keeps a deployed version from being deleted."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mlops_ci.config import Config
from mlops_ci.errors import GateFailed, ServiceError
from mlops_ci.registry import ModelRegistry, resolve_version
from mlops_ci.steps.deploy import SERVING_STATES


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


def status(config: Config, registry: ModelRegistry) -> list[EnvStatus]:
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
                *_live(config, name),
            )
        )
    return out


def _live(config: Config, env_name: str) -> tuple[dict[str, float] | None, bool | None]:
    """(the live split, whether the endpoint runs): a recorded 'serving' on a dead endpoint
    must not read as serving."""
    split = _live_split(config, env_name)
    if split is not None:
        return split, True
    env = config.deploy[env_name]
    if env.target == "local":
        from mlops_ci.targets.local import LocalTarget

        return None, LocalTarget(config, env).running()
    if env.target == "docker":
        from mlops_ci.targets.docker import DockerTarget

        target, _why = DockerTarget.connect(config.model.name, env)
        return None, (target.running() if target is not None else None)
    return None, None


def _live_split(config: Config, env_name: str) -> dict[str, float] | None:
    """The weights the environment's endpoint routes by now; None where nothing runs (or the
    target does not route by weight)."""
    env = config.deploy[env_name]
    target: Any
    if env.target == "local":
        from mlops_ci.targets.local import LocalTarget

        target = LocalTarget(config, env)
    elif env.target == "docker":
        from mlops_ci.targets.docker import DockerTarget

        target, _why = DockerTarget.connect(config.model.name, env)
    else:
        return None
    if target is None or not target.running():
        return None
    try:
        weights: dict[str, float] = target.traffic()["weights"]
    except ServiceError:
        return None  # running but not answering: the recorded state is all there is
    return weights


def delete_version(config: Config, registry: ModelRegistry, version_ref: str) -> str:
    """Delete a model version from the registry, refusing one an environment runs."""
    name = config.model.name
    version = resolve_version(registry, name, version_ref)
    users = []
    for env in status(config, registry):
        if env.live_split and env.live_split.get(version.version, 0) > 0:
            users.append(f"{env.env} (takes {env.live_split[version.version]:g} % of its traffic)")
        elif env.version == version.version:
            users.append(f"{env.env} (alias '{env.alias}')")
    for key, value in version.tags.items():
        if key.startswith("mlops.deploy.") and key.endswith(".status") and value in SERVING_STATES:
            env_name = key.split(".")[2]
            if not any(u.startswith(env_name + " ") for u in users):
                users.append(f"{env_name} (recorded {value})")
    if users:
        raise GateFailed(
            f"{name} v{version.version} is deployed in {', '.join(users)}; not deleting it",
            hint="deploy another version (or roll back) first",
        )
    registry.delete_version(name, version.version)
    return version.version
