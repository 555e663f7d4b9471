"""rollback: put the version an environment served before back at 100 %, and its alias.

The previous version is the one the last deployment replaced (``mlops.deploy.ENV.previous``
on the version the alias names). Locally and on docker it is usually still loaded at 0 %, so
the switch is one split change; otherwise it is loaded (its container started) first. A rollout
that never finished (its deploy was killed mid-canary: another version still takes traffic
beside the alias's) is rolled back by putting the alias's version back at 100 %; one whose
journal says so (``deploy_journal``) is settled by reverting it, and recorded as this rollback.
A rollback holds the environment's deploy lock: refused while a deploy runs.
"""

from __future__ import annotations

from dataclasses import dataclass

from mlops_ci.config.types import Config, DeployEnv
from mlops_ci.errors import InputError
from mlops_ci.registry import ModelRegistry
from mlops_ci.steps.deploy import environment
from mlops_ci.steps.deploy_journal import locked
from mlops_ci.steps.deploy_record import DeployResult
from mlops_ci.steps.deploy_settle import settle
from mlops_ci.steps.gates import now_iso
from mlops_ci.steps.promotion_records import move_alias
from mlops_ci.targets import TARGETS, Targets, routed_target, target_for
from mlops_ci.targets.base import RoutedTarget
from mlops_ci.targets.judging import Progress


@dataclass(frozen=True)
class RollbackResult:
    name: str
    env: str
    from_version: str
    to_version: str
    by: str
    reason: str
    at: str


def rollback(
    config: Config,
    registry: ModelRegistry,
    env_name: str,
    by: str,
    reason: str,
    targets: Targets = TARGETS,
    progress: Progress = lambda _: None,
) -> RollbackResult:
    env = environment(config, env_name)
    with locked(config.root, env.name, "rollback of"):
        settled = settle(config, registry, env, targets, progress, "rollback", finish=False)
        if settled is not None and settled.status == "rolled_back":
            return _killed_deploy(config, registry, settled, by, reason)
        return _rollback(config, registry, env, by, reason, targets)


def _rollback(
    config: Config,
    registry: ModelRegistry,
    env: DeployEnv,
    by: str,
    reason: str,
    targets: Targets,
) -> RollbackResult:
    name, env_name = config.model.name, env.name
    current = registry.get_version_by_alias(name, env.alias)
    if current is None:
        raise InputError(f"{name} has no alias '{env.alias}': nothing deployed to {env_name}")
    interrupted = _interrupted_rollout(config, registry, env, current.version, targets)
    if interrupted is not None:
        endpoint, others = interrupted
        return _finish_interrupted(
            config, registry, env_name, endpoint, current.version, others, by, reason
        )
    previous = current.tags.get(f"mlops.deploy.{env_name}.previous")
    if not previous:
        raise InputError(f"{name} v{current.version} replaced no version in {env_name}")
    target = target_for(config, env, registry, None, targets)
    if target.routed:
        _switch(target, env_name, previous)
    else:
        target.switch(registry.get_version(name, previous))
    at = now_iso()
    prefix = f"mlops.deploy.{env_name}."
    registry.set_version_tags(
        name,
        current.version,
        {
            prefix + "status": "rolled_back",
            prefix + "at": at,
            prefix + "rolled_back.by": by,
            prefix + "rolled_back.reason": reason,
        },
    )
    registry.set_version_tags(name, previous, {prefix + "status": "serving", prefix + "at": at})
    production = config.registry.production_alias
    move_alias(registry, name, env.alias, previous, production, current.version)
    return RollbackResult(name, env_name, current.version, previous, by, reason, at)


def _switch(target: RoutedTarget, env_name: str, version: str) -> None:
    """``version`` alone at 100 %, loaded first (its container started) unless it still is."""
    if not target.running():
        raise InputError(f"nothing serves {env_name} on {target.name}: deploy v{version} instead")
    if version not in target.traffic()["versions"]:
        target.load(version)
    target.set_split({version: 100.0})


def _interrupted_rollout(
    config: Config,
    registry: ModelRegistry,
    env: DeployEnv,
    alias_version: str,
    targets: Targets,
) -> tuple[RoutedTarget, list[str]] | None:
    """(the running endpoint, the versions that take traffic beside the alias's version): a
    rollout that never finished (its deploy killed mid-canary); None when there was none.
    Rolling back then means the alias's version at 100 %."""
    target, _running = routed_target(config, env, registry, targets)
    if target is None:
        return None
    weights = target.traffic()["weights"]
    if alias_version not in weights:
        return None
    others = sorted(v for v, w in weights.items() if v != alias_version and w > 0)
    return (target, others) if others else None


def _finish_interrupted(
    config: Config,
    registry: ModelRegistry,
    env_name: str,
    target: RoutedTarget,
    alias_version: str,
    others: list[str],
    by: str,
    reason: str,
) -> RollbackResult:
    target.set_split({alias_version: 100.0})
    for version in others:
        target.unload(version)
    at = now_iso()
    prefix = f"mlops.deploy.{env_name}."
    for version in others:
        registry.set_version_tags(
            config.model.name,
            version,
            {
                prefix + "status": "rolled_back",
                prefix + "at": at,
                prefix + "rolled_back.by": by,
                prefix + "rolled_back.reason": f"{reason} (an interrupted rollout)",
            },
        )
    return RollbackResult(
        config.model.name, env_name, ", ".join(others), alias_version, by, reason, at
    )


def _killed_deploy(
    config: Config, registry: ModelRegistry, settled: DeployResult, by: str, reason: str
) -> RollbackResult:
    """A deploy a killed process left, reverted by this rollback: who and why on its version."""
    prefix = f"mlops.deploy.{settled.env}."
    registry.set_version_tags(
        config.model.name,
        settled.version,
        {
            prefix + "rolled_back.by": by,
            prefix + "rolled_back.reason": f"{reason} (a deploy a killed process left)",
        },
    )
    back = next(iter(settled.split), "none")
    return RollbackResult(
        config.model.name, settled.env, settled.version, back, by, reason, settled.at
    )
