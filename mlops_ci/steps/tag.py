"""tag: set a user's own tags on a model version (a number or ``@alias``).

The ``mlops.`` and ``mlflow.`` namespaces hold what the steps and MLflow record (verdicts,
deployments, lineage), so a tag there is refused: a person cannot forge a step's record.
"""

from __future__ import annotations

from dataclasses import dataclass

from mlops_ci.config.types import Config
from mlops_ci.errors import InputError
from mlops_ci.registry import ModelRegistry, resolve_version
from mlops_ci.steps.versions import reserved


@dataclass(frozen=True)
class TagResult:
    name: str
    version: str
    tags: dict[str, str]


def tag(config: Config, registry: ModelRegistry, ref: str, tags: dict[str, str]) -> TagResult:
    """Set the user's own tags on a version (``ref``: a number or ``@alias``). The ``mlops.``
    and ``mlflow.`` namespaces are the tools' records and are refused."""
    if not tags:
        raise InputError("give at least one KEY=VALUE to set")
    for key in tags:
        if reserved(key):
            raise InputError(
                f"tag '{key}': the {key.split('.')[0].lower()}. namespace is written by the tools "
                "only (whatever its case)",
                hint="choose a key of your own, e.g. team.owner=ml-platform",
            )
    version = resolve_version(registry, config.model.name, ref)
    registry.set_version_tags(config.model.name, version.version, tags)
    return TagResult(config.model.name, version.version, tags)
