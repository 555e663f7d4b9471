"""delete-version: delete a model version from the registry, unless an environment runs it.

A version is in use when a live split routes traffic to it, when an environment's alias names
it, or when a deployment recorded on it is still serving: deleting it would pull the model from
under running traffic (or leave a rollback with nothing to roll back to).
"""

from __future__ import annotations

from mlops_ci.config.types import Config
from mlops_ci.errors import GateFailed
from mlops_ci.registry import ModelRegistry, deploy_states, resolve_version
from mlops_ci.steps.deploy import SERVING_STATES
from mlops_ci.steps.status import status


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
    for env_name, value in deploy_states(version.tags).items():
        if value in SERVING_STATES and not any(u.startswith(env_name + " ") for u in users):
            users.append(f"{env_name} (recorded {value})")
    if users:
        raise GateFailed(
            f"{name} v{version.version} is deployed in {', '.join(users)}; not deleting it",
            hint="deploy another version (or roll back) first",
        )
    registry.delete_version(name, version.version)
    return version.version
