"""status: what runs where — per environment, the alias, the recorded deployment and, for the
local and docker targets, the live split of the serving process or front (``delete-version``
asks it before deleting).

A deploy a killed process left (``deploy_journal``) is settled here first, as the next deploy
would (``deploy_settle``): finished or reverted, and said in ``settled``; a deploy running now
is named by its pid in ``deploying`` (its environment is left alone).
"""

from __future__ import annotations

from dataclasses import dataclass

from mlops_ci.config.types import Config, DeployEnv
from mlops_ci.errors import ServiceError
from mlops_ci.registry import ModelRegistry
from mlops_ci.steps.deploy_journal import holder, lock_path, maybe_locked
from mlops_ci.steps.deploy_settle import settle
from mlops_ci.targets import TARGETS, Targets, routed_target
from mlops_ci.targets.judging import Progress


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
    settled: str | None = None  # what was done with a deploy a killed process left
    deploying: str | None = None  # the pid of a deploy running now


def status(
    config: Config,
    registry: ModelRegistry,
    targets: Targets = TARGETS,
    progress: Progress = lambda _: None,
) -> list[EnvStatus]:
    out = []
    for name, env in config.deploy.items():
        settled, deploying = _settle(config, registry, env, targets, progress)
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
                settled=settled,
                deploying=deploying,
            )
        )
    return out


def _settle(
    config: Config,
    registry: ModelRegistry,
    env: DeployEnv,
    targets: Targets,
    progress: Progress,
) -> tuple[str | None, str | None]:
    """(what was done with a deploy a killed process left, the pid of a deploy running now)."""
    if not lock_path(config.root, env.name).exists():
        return None, None  # never deployed from this disk
    with maybe_locked(config.root, env.name) as lock:
        if lock is None:
            return None, holder(config.root, env.name)
        try:
            result = settle(config, registry, env, targets, progress, "status")
        except ServiceError as err:
            return f"a killed deploy is left unsettled: {str(err).splitlines()[0]}", None
    return (result.note if result else None), None


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
