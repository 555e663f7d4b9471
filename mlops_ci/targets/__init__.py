"""Deploy targets, and the one place that maps mlops.yaml's ``deploy.ENV.target`` to one.

``local`` (a background `mlops-ci serve`) and ``docker`` (the packaged image through the Docker
SDK, each version its own container behind a front) route by weight; ``kubernetes`` renders
manifests, applied or written (``targets.base`` has the ports). ``TARGETS`` maps each name to
its kind: a factory that imports its module when called (the Docker SDK and the kubernetes
client are imported only where they are used), and whether it routes by weight, so a question
only a routed target can answer costs a manifest target no import.
The steps take ``targets=`` (``TARGETS`` unless a test gives its own) and ask ``target_for``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from mlops_ci.config.types import Config, DeployEnv
from mlops_ci.errors import InputError
from mlops_ci.registry import ModelRegistry
from mlops_ci.targets.base import RoutedTarget, Target, TargetUnavailable

# (config, the environment, the registry its versions come from, the environment variables
# (None: this process's)) -> the environment's target; TargetUnavailable when it cannot be had.
TargetFactory = Callable[[Config, DeployEnv, ModelRegistry, Mapping[str, str] | None], Target]


def _local(
    config: Config, env: DeployEnv, registry: ModelRegistry, environ: Mapping[str, str] | None
) -> Target:
    from mlops_ci.targets.local import LocalTarget
    from mlops_ci.targets.sources import Packages, Sourced

    local = LocalTarget(config, env)
    packages = Packages(registry, config.model.name, local.folder)
    return Sourced(local, lambda version: packages.spec(version).folder, packages)


def _docker(
    config: Config, env: DeployEnv, registry: ModelRegistry, environ: Mapping[str, str] | None
) -> Target:
    from mlops_ci.packaging.image import image_tag
    from mlops_ci.records import JobFolder
    from mlops_ci.targets.docker import DockerTarget
    from mlops_ci.targets.sources import Packages, Sourced

    docker, why = DockerTarget.connect(config.model.name, env)
    if docker is None:
        raise TargetUnavailable("Docker engine", why or "no answer")
    name = config.model.name
    packages = Packages(registry, name, JobFolder(config.root).deploy_state(env.name))
    return Sourced(docker, lambda version: image_tag(config, name, version), packages)


def _kubernetes(
    config: Config, env: DeployEnv, registry: ModelRegistry, environ: Mapping[str, str] | None
) -> Target:
    from mlops_ci.targets.kubernetes import KubernetesTarget

    return KubernetesTarget(config, env, environ)


@dataclass(frozen=True)
class TargetKind:
    """A deploy target as the registry knows it: how to make one, and whether it is routed."""

    make: TargetFactory
    routed: bool


Targets = Mapping[str, TargetKind]

TARGETS: Targets = {
    "local": TargetKind(_local, routed=True),
    "docker": TargetKind(_docker, routed=True),
    "kubernetes": TargetKind(_kubernetes, routed=False),
}


def target_for(
    config: Config,
    env: DeployEnv,
    registry: ModelRegistry,
    environ: Mapping[str, str] | None = None,
    targets: Targets = TARGETS,
) -> Target:
    """The target ``env`` deploys to; TargetUnavailable (a ServiceError) when its engine does
    not answer."""
    kind = targets.get(env.target)
    if kind is None:
        raise InputError(
            f"mlops.yaml: deploy.{env.name}.target: no deploy target '{env.target}' "
            f"(known: {', '.join(targets) or 'none'})"
        )
    return kind.make(config, env, registry, environ)


def routed_target(
    config: Config,
    env: DeployEnv,
    registry: ModelRegistry,
    targets: Targets = TARGETS,
) -> tuple[RoutedTarget | None, bool | None]:
    """(the environment's endpoint if it runs, whether it runs) for the targets that route by
    weight; (None, None) where that cannot be known (kubernetes, or no Docker engine answers)."""
    kind = targets.get(env.target)
    if kind is not None and not kind.routed:
        return None, None
    try:
        target = target_for(config, env, registry, None, targets)
    except TargetUnavailable:
        return None, None
    if not target.routed:
        return None, None
    running = target.running()
    return (target if running else None), running
