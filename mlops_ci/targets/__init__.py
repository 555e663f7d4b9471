"""Deploy targets: ``local`` (a background `mlops-ci serve`), ``docker`` (the packaged image
through the Docker SDK) and ``kubernetes`` (manifests, applied or written)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mlops_ci.config.types import Config, DeployEnv


def routed_target(config: Config, env: DeployEnv) -> tuple[Any | None, bool | None]:
    """(the environment's endpoint if it runs, whether it runs) for the targets that route by
    weight (local process, docker front); (None, None) where that cannot be known (kubernetes,
    or no Docker engine answers)."""
    target: Any
    if env.target == "local":
        from mlops_ci.targets.local import LocalTarget

        target = LocalTarget(config, env)
    elif env.target == "docker":
        from mlops_ci.targets.docker import DockerTarget

        target, _why = DockerTarget.connect(config.model.name, env)
        if target is None:
            return None, None
    else:
        return None, None
    running = bool(target.running())
    return (target if running else None), running
