"""deploy.ENV.shadow: once a rollout leaves the endpoint serving, the version named there
scores a share of its requests unseen (``serve/shadow.py``), its outputs in the input log beside
the served version's for `mlops-ci quality` to judge on labelled requests.

Each deploy to the environment applies it again: the alias (``@candidate``) may name another
version by now. A shadow that names the version being served, or nothing yet, means no shadow;
one that cannot be started (not packaged, not loadable) is said in the deploy's note and leaves
the deployment as it is — the served version is what the deploy was judged on.
"""

from __future__ import annotations

from dataclasses import replace

from mlops_ci.config.types import Config, DeployEnv
from mlops_ci.errors import MlopsError
from mlops_ci.registry import ModelRegistry, resolve_version
from mlops_ci.steps.deploy_record import DeployResult
from mlops_ci.targets.base import RoutedTarget

APPLIED_AFTER = ("serving", "unchanged", "ab")  # a rollout that left the endpoint serving


def apply_shadow(
    config: Config,
    registry: ModelRegistry,
    env: DeployEnv,
    target: RoutedTarget,
    result: DeployResult,
) -> DeployResult:
    """``result`` with the shadow it left (``shadow``) and, where there is none, why."""
    wanted = env.shadow
    if wanted is None or result.status not in APPLIED_AFTER:
        return result
    served = sorted(v for v, w in result.split.items() if w > 0)
    try:
        version = resolve_version(registry, config.model.name, wanted.version).version
    except MlopsError as err:  # no such alias yet, or a registry that did not answer
        return _without(target, result, f"no shadow: {wanted.version}: {err}")
    if version in served:
        return _without(target, result, f"no shadow: {wanted.version} is v{version}, served")
    try:
        if version not in target.traffic()["versions"]:
            target.load(version)
        target.set_shadow(version, wanted.percent)
    except (MlopsError, OSError) as err:
        why = str(err).splitlines()[0][:200]
        return _without(target, result, f"shadow v{version} not started: {why}")
    shadow = {"version": version, "percent": wanted.percent}
    return replace(result, shadow=shadow)


def _without(target: RoutedTarget, result: DeployResult, why: str) -> DeployResult:
    try:
        target.set_shadow(None)
    except (MlopsError, OSError) as err:
        why += f" (an earlier shadow could not be removed: {str(err).splitlines()[0][:120]})"
    note = f"{result.note}; {why}" if result.note else why
    return replace(result, note=note)
