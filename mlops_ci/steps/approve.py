"""approve: record who approved a version for an environment, when and why.

Outside GitHub Actions (whose environment reviewers approve the job itself) this is how an
environment with ``approval: required`` gets its approval; deploy reads it from the version.
"""

from __future__ import annotations

from mlops_ci.config.types import Config
from mlops_ci.errors import InputError
from mlops_ci.registry import ModelRegistry, resolve_version
from mlops_ci.steps.deploy import environment
from mlops_ci.steps.gates import Approval, now_iso


def approve(
    config: Config,
    registry: ModelRegistry,
    version_ref: str,
    env_name: str,
    by: str,
    reason: str,
    source: str = "mlops-ci approve",
    at: str | None = None,
) -> tuple[str, Approval]:
    """Returns (version, approval) after writing ``mlops.approval.ENV.*`` on the version."""
    environment(config, env_name)
    if not by.strip() or not reason.strip():
        raise InputError("approve needs --by NAME and a non-empty --reason")
    version = resolve_version(registry, config.model.name, version_ref)
    approval = Approval(by, at or now_iso(), reason, source)
    registry.set_version_tags(config.model.name, version.version, approval.tags(env_name))
    return version.version, approval
