"""rollback: put the version an environment served before back at 100 %, and its alias.

The previous version is the one the last deployment replaced (``mlops.deploy.ENV.previous``
on the version the alias names). Locally and on docker it is usually still loaded at 0 %, so
the switch is one split change; otherwise it is loaded (its container started) first. A rollout
that never finished (its deploy was killed mid-canary: another version still takes traffic
beside the alias's) is rolled back by putting the alias's version back at 100 %.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mlops_ci.config.types import Config
from mlops_ci.errors import InputError
from mlops_ci.registry import ModelRegistry
from mlops_ci.steps.deploy import environment
from mlops_ci.steps.gates import now_iso


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
    config: Config, registry: ModelRegistry, env_name: str, by: str, reason: str
) -> RollbackResult:
    env = environment(config, env_name)
    name = config.model.name
    current = registry.get_version_by_alias(name, env.alias)
    if current is None:
        raise InputError(f"{name} has no alias '{env.alias}': nothing deployed to {env_name}")
    target, interrupted = _interrupted_rollout(config, env_name, current.version)
    if interrupted:
        return _finish_interrupted(
            config, registry, env_name, target, current.version, interrupted, by, reason
        )
    previous = current.tags.get(f"mlops.deploy.{env_name}.previous")
    if not previous:
        raise InputError(f"{name} v{current.version} replaced no version in {env_name}")
    if env.target == "local":
        _local_switch(config, registry, env_name, previous)
    elif env.target == "docker":
        _docker_switch(config, env_name, previous)
    elif env.target == "kubernetes":
        from mlops_ci.targets import kubernetes as k8s

        release = k8s.release_for(config, registry.get_version(name, previous), 100.0)
        k8s.write(
            config.root / env.kubernetes.output_dir / env_name, k8s.render(name, env, [release])
        )
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
    registry.set_alias(name, env.alias, previous)
    return RollbackResult(name, env_name, current.version, previous, by, reason, at)


def _local_switch(config: Config, registry: ModelRegistry, env_name: str, version: str) -> None:
    from mlops_ci.serve.server import Weighted, from_registry
    from mlops_ci.targets.local import LocalTarget

    target = LocalTarget(config, environment(config, env_name))
    if target.process() is None:
        raise InputError(f"no serving process for {env_name}: deploy v{version} instead")
    if version not in target.traffic()["versions"]:
        ((spec, _),) = from_registry(
            registry, config.model.name, [Weighted(version, None)], target.folder
        )
        target.load(version, spec.folder)
    target.set_split({version: 100.0})


def _docker_switch(config: Config, env_name: str, version: str) -> None:
    from mlops_ci.errors import ServiceError
    from mlops_ci.packaging.image import image_tag
    from mlops_ci.targets.docker import DockerTarget

    target, why = DockerTarget.connect(config.model.name, environment(config, env_name))
    if target is None:
        raise ServiceError(f"no Docker engine: {why}")
    if not target.running():
        raise InputError(f"nothing serves {env_name} on docker: deploy v{version} instead")
    if version not in target.traffic()["versions"]:
        target.load(version, image_tag(config, config.model.name, version))
    target.set_split({version: 100.0})


def _interrupted_rollout(
    config: Config, env_name: str, alias_version: str
) -> tuple[Any, list[str]]:
    """(the running endpoint, the versions that take traffic beside the alias's version): a
    rollout that never finished (its deploy killed mid-canary). Rolling back then means the
    alias's version at 100 %."""
    from mlops_ci.targets import routed_target

    target, _running = routed_target(config, environment(config, env_name))
    if target is None:
        return None, []
    weights: dict[str, float] = target.traffic()["weights"]
    if alias_version not in weights:
        return target, []
    return target, sorted(v for v, w in weights.items() if v != alias_version and w > 0)


def _finish_interrupted(
    config: Config,
    registry: ModelRegistry,
    env_name: str,
    target: Any,
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
