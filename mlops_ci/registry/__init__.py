"""The model registry port: what the steps need from MLflow, as plain records.

Steps talk to ``ModelRegistry``; ``registry.mlflow.MlflowRegistry`` is the real adapter and
``tests/support/fakes.py`` an in-memory one. Keeping MLflow behind this port keeps ``import mlflow``
(about a second) out of everything that does not touch the registry.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from mlops_ci.config.types import Config
    from mlops_ci.runner import ModelRunner

# Tags every step reads or writes; one place, so spellings cannot drift.
TAG_CACHE_KEY = "mlops.cache_key"
# How the training command was isolated ("isolated by bubblewrap (…)" or "not isolated: why").
TAG_ISOLATION = "mlops.train.isolation"
TAG_COMPLETE = "mlops.complete"
# The train (its journal in .mlops/train.json) that made a run: found by it even when the answer
# to the run's creation was lost.
TAG_TRAIN_ID = "mlops.train.id"
TAG_MODEL_URI = "mlops.model_uri"
TAG_VERDICT = "mlops.compare.verdict"
# MLflow's rule for an alias (mlflow.utils.validation), checked before a request carries one.
ALIAS = re.compile(r"[\w-]{1,255}")
TAG_MODEL_SHA256 = "mlops.model.sha256"  # digest of the model's file manifest
# A run's predictions on its evaluation rows, as train scored them (evaluation.predictions' record).
EVALUATION_ARTIFACT = "mlops/evaluation.json"


@dataclass(frozen=True)
class RunRecord:
    run_id: str
    status: str
    params: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)

    @property
    def model_uri(self) -> str | None:
        return self.tags.get(TAG_MODEL_URI)


@dataclass(frozen=True)
class VersionRecord:
    name: str
    version: str
    run_id: str | None
    source: str
    tags: dict[str, str] = field(default_factory=dict)
    aliases: tuple[str, ...] = ()  # as the registry answered when this record was read


@dataclass(frozen=True)
class NewRun:
    """Everything train records in one run; the adapter writes it all and ends the run
    FINISHED, or leaves it for its caller to end FAILED or KILLED."""

    experiment: str
    artifact_location: str
    params: dict[str, str]
    metrics: dict[str, float]
    tags: dict[str, str]
    model_file: Path
    artifacts: dict[str, Path]  # artifact sub-folder -> local file
    example_features: Any = None  # a DataFrame of a few feature rows, for the model signature
    task: str = "classification"  # model.task: how a framework's own model file is loaded
    # Given the loaded model, the text logged as EVALUATION_ARTIFACT (None: nothing logged).
    evaluate: Callable[[Any], str | None] | None = None
    # train.isolation: the sandbox of the model runner that loads model_file (never here).
    isolation: str = "auto"
    # model.code_paths, resolved: the local modules the model imports (into its code/ folder)
    code_paths: tuple[Path, ...] = ()
    # The RUNNING run (start_run) to log into; None: the adapter makes one once the model loaded.
    run_id: str | None = None


class ModelRegistry(Protocol):
    def find_cached_run(self, experiment: str, cache_key: str) -> RunRecord | None: ...
    def find_run_with_tag(self, experiment: str, key: str, value: str) -> RunRecord | None: ...
    def start_run(self, experiment: str, tags: dict[str, str]) -> str: ...
    def end_runs(self, experiment: str, key: str, value: str, status: str) -> list[str]: ...
    def log_run(self, run: NewRun) -> RunRecord: ...
    def get_run(self, run_id: str) -> RunRecord: ...
    def get_version_by_alias(self, name: str, alias: str) -> VersionRecord | None: ...
    def has_model(self, name: str) -> bool: ...
    def get_version(self, name: str, version: str) -> VersionRecord: ...
    def find_versions_by_run(self, name: str, run_id: str) -> list[VersionRecord]: ...
    def find_versions_with_tag(self, name: str, key: str) -> list[VersionRecord]: ...
    def search_versions(
        self, name: str, tags: dict[str, str], limit: int
    ) -> list[VersionRecord]: ...
    def create_version(
        self, name: str, run: RunRecord, tags: dict[str, str], description: str
    ) -> VersionRecord: ...
    def set_alias(self, name: str, alias: str, version: str) -> None: ...
    def set_version_tags(self, name: str, version: str, tags: dict[str, str]) -> None: ...
    def delete_version(self, name: str, version: str) -> None: ...
    def load_model(self, uri: str, runner: ModelRunner) -> Any: ...
    def download_model(self, uri: str, dest: Path) -> Path: ...
    def log_artifacts(self, run_id: str, folder: Path, artifact_path: str) -> None: ...
    def read_artifact_text(self, run_id: str, path: str) -> str | None: ...
    def download_artifacts(self, run_id: str, path: str, dest: Path) -> Path: ...
    def list_artifacts(self, run_id: str, path: str) -> list[str]: ...
    def log_metrics(self, run_id: str, metrics: dict[str, float]) -> None: ...
    def describe(self) -> str: ...


def tag_map(tags: dict[str, str], prefix: str, suffix: str) -> dict[str, str]:
    """The tags named ``PREFIX<name>SUFFIX`` as {name: value}, by name: e.g. each environment's
    deploy status (``mlops.deploy.ENV.status``) or each alias's promotion time."""
    found = {
        key[len(prefix) : len(key) - len(suffix)]: value
        for key, value in tags.items()
        if key.startswith(prefix) and key.endswith(suffix) and len(key) > len(prefix + suffix)
    }
    return dict(sorted(found.items()))


def deploy_states(tags: dict[str, str]) -> dict[str, str]:
    """Environment -> the deploy status recorded on a version (``mlops.deploy.ENV.status``)."""
    return tag_map(tags, "mlops.deploy.", ".status")


def resolve_version(registry: ModelRegistry, name: str, ref: str) -> VersionRecord:
    """A version by number or ``@alias``; unknown ones are bad input naming the registry."""
    if ref.startswith("@"):
        from mlops_ci.errors import InputError

        if not ALIAS.fullmatch(ref[1:]):
            raise InputError(
                f"'{ref[:80]}{'...' if len(ref) > 80 else ''}': an alias is 1 to 255 letters, "
                "digits, _ and - (as MLflow takes them)"
            )
        found = registry.get_version_by_alias(name, ref[1:])
        if found is None:
            if not registry.has_model(name):
                raise InputError(
                    f"there is no model '{name}' in {registry.describe()}",
                    hint="check the model name (model.name in mlops.yaml, or --model)",
                )
            raise InputError(f"model '{name}' has no alias '{ref[1:]}' in {registry.describe()}")
        return found
    if not (ref.isascii() and ref.isdigit()) or len(ref) > 18:
        from mlops_ci.errors import InputError

        raise InputError(f"--version '{ref[:80]}': expected a version number or @alias")
    return registry.get_version(name, ref)


def open_registry(config: Config, honour_env: bool = True) -> ModelRegistry:
    """The MLflow registry named by MLFLOW_TRACKING_URI (unless ``honour_env`` is False) or the
    config; imports MLflow lazily."""
    from mlops_ci.registry.mlflow import MlflowRegistry

    return MlflowRegistry.for_config(config, honour_env)
