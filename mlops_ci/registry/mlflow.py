"""MLflow adapter of the registry port: tracking runs (``mlflowruns``), logged models,
registry versions, aliases; every call bounded and mapped (``mlflowcalls``)."""

from __future__ import annotations

import dataclasses
import logging
import os
import random
import re
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlops_ci.credentials import redact_logs, redact_urls, safe_url
from mlops_ci.errors import InputError
from mlops_ci.registry import TAG_MODEL_URI, RunRecord, VersionRecord
from mlops_ci.registry.mlflowcalls import HTTP_DEFAULTS
from mlops_ci.registry.mlflowmodel import load_logged_model
from mlops_ci.registry.mlflowruns import MlflowRuns
from mlops_ci.registry.tracking import URI_FORMS, redact, resolve_tracking_uri
from mlops_ci.runner import ModelRunner

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion

    from mlops_ci.config.types import Config

# A write that lost a race on a unique key (another process's write of the same row) is retried.
_CONFLICT_RETRIES = 5
# How SQLite, PostgreSQL and MySQL (through SQLAlchemy and MLflow's server) word that clash.
_UNIQUE_CLASH = re.compile(r"IntegrityError|unique constraint|Duplicate entry", re.IGNORECASE)


class MlflowRegistry(MlflowRuns):
    def __init__(
        self, tracking_uri: str, artifact_location: str, source: str = "the tracking URI"
    ) -> None:
        for key, value in HTTP_DEFAULTS.items():
            os.environ.setdefault(key, value)
        import mlflow

        # MLflow sets its loggers to INFO on import; its table-creation chatter is not ours.
        for noisy in ("mlflow", "alembic"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
        # What MLflow and the libraries under it log shows no credential: their messages quote
        # the tracking URI as given (MLflow's own handler serves these four loggers).
        redact_logs("mlflow", "alembic", "sqlalchemy.engine", "huey")
        if safe_url(tracking_uri) != tracking_uri:
            # A run's end prints "View run … at: URI…" to stdout (not through logging), the URI
            # as given, credentials and all; MLflow's documented switch turns those lines off.
            os.environ["MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"] = "true"

        self.uri = tracking_uri
        self.artifact_location = artifact_location
        # MLflow also writes the URIs into os.environ (for subprocesses): undo that, or the next
        # registry opened in this process would take this one's URI for the user's setting.
        before = {k: os.environ.get(k) for k in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")}
        mlflow.set_tracking_uri(tracking_uri)
        mlflow.set_registry_uri(tracking_uri)
        for name, was in before.items():
            if was is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = was
        from mlflow.exceptions import MlflowException

        try:
            self.client: MlflowClient = mlflow.MlflowClient(tracking_uri, registry_uri=tracking_uri)
        except MlflowException as err:  # a store MLflow cannot open: the URI is at fault
            if "://" not in tracking_uri and not tracking_uri.startswith("databricks"):
                why = f"not a tracking URI ({URI_FORMS})"
            else:
                why = redact_urls(str(err.message).strip().split(". ")[0])
            raise InputError(f"{source}: {redact(tracking_uri)!r}: {why}") from None

    @classmethod
    def for_config(cls, config: Config, honour_env: bool = True) -> MlflowRegistry:
        location = config.registry.artifact_location
        if "://" not in location:
            location = str(config.resolve(location))
        uri, source = resolve_tracking_uri(config, honour_env)
        return cls(uri, location, source)

    # --- registry -----------------------------------------------------------------------------

    def get_version_by_alias(self, name: str, alias: str) -> VersionRecord | None:
        found = self._lookup(self.client.get_model_version_by_alias, name, alias)
        return None if found is None else _version_record(found)

    def has_model(self, name: str) -> bool:
        return self._lookup(self.client.get_registered_model, name) is not None

    def get_version(self, name: str, version: str) -> VersionRecord:
        found = self._lookup(self.client.get_model_version, name, version)
        if found is not None:
            return _version_record(found)
        if not self.has_model(name):
            raise InputError(f"there is no model '{name}' in {self.describe()}")
        raise InputError(f"model '{name}' has no version '{version}' in {self.describe()}")

    def find_versions_by_run(self, name: str, run_id: str) -> list[VersionRecord]:
        found = self._call(
            self.client.search_model_versions, f"name = '{name}' and run_id = '{run_id}'"
        )
        return [_version_record(v) for v in found]

    def find_versions_with_tag(self, name: str, key: str) -> list[VersionRecord]:
        """Versions of ``name`` carrying tag ``key`` (filtered by the server)."""
        if _unquotable(key, name):
            raise InputError(f"cannot search the registry for tag {key!r} of model {name!r}")
        found = self._call(
            self.client.search_model_versions, f"name = '{name}' and tags.`{key}` LIKE '%'"
        )
        return [_version_record(v) for v in found]

    def search_versions(self, name: str, tags: dict[str, str], limit: int) -> list[VersionRecord]:
        """Versions of ``name`` whose tags equal ``tags``, newest first, at most ``limit``: the
        filter is MLflow's (its store answers with an indexed query, not a full listing)."""
        if _unquotable(name, *tags, *tags.values()):
            raise InputError("a model name, tag key or value with ' ` or \\ cannot be searched for")
        clauses = [f"name = '{name}'", *(f"tags.`{k}` = '{v}'" for k, v in tags.items())]
        found = self._call(
            self.client.search_model_versions,
            " and ".join(clauses),
            max_results=limit,
            order_by=["version_number DESC"],
        )
        if not found:
            return []
        # MLflow's search leaves aliases out of what it returns; the model lists them all.
        held: dict[str, list[str]] = {}
        for alias, number in (
            self._call(self.client.get_registered_model, name).aliases or {}
        ).items():
            held.setdefault(str(number), []).append(alias)
        return [
            dataclasses.replace(_version_record(v), aliases=tuple(held.get(str(v.version), ())))
            for v in found
        ]

    def create_version(
        self, name: str, run: RunRecord, tags: dict[str, str], description: str
    ) -> VersionRecord:
        """A new version whose tags are written with it, so it is never seen half-tagged."""
        from mlflow.exceptions import MlflowException

        def create_registered_model() -> None:
            try:
                self.client.create_registered_model(name)
            except MlflowException as err:
                if "RESOURCE_ALREADY_EXISTS" not in str(err.error_code):
                    raise

        self._call(create_registered_model)
        source = run.model_uri
        if source is None:
            raise InputError(f"run '{run.run_id}' has no model ({TAG_MODEL_URI} tag missing)")
        model_id = source.removeprefix("models:/") if source.startswith("models:/m-") else None
        version = self._call(
            self.client.create_model_version,
            name,
            source=source,
            run_id=run.run_id,
            tags=tags,
            description=description,
            model_id=model_id,
        )
        return self._one_version_per_run(name, run.run_id, _version_record(version))

    def _one_version_per_run(self, name: str, run_id: str, created: VersionRecord) -> VersionRecord:
        """MLflow's client retries a POST whose answer was lost (a 5xx from a proxy after the
        server had created the version): keep the first version of the run, delete the copies."""
        versions = sorted(self.find_versions_by_run(name, run_id), key=lambda v: int(v.version))
        if len(versions) <= 1:
            return created
        keep, *copies = versions
        for copy in copies:
            self._call(self.client.delete_model_version, name, copy.version)
        return keep

    def set_alias(self, name: str, alias: str, version: str) -> None:
        self._write(self.client.set_registered_model_alias, name, alias, version)

    def set_version_tags(self, name: str, version: str, tags: dict[str, str]) -> None:
        for key, value in tags.items():
            self._write(self.client.set_model_version_tag, name, version, key, value)

    def _write(self, fn: Any, *args: Any) -> None:
        """One registry write. MLflow's SQL store writes an alias or a tag as read-then-insert,
        so two processes writing the same one at once can collide on its unique key: the loser
        retries (the value ends as whichever write came last, as without the race)."""
        self._mapped(self._retrying_clashes, fn, *args)

    def _retrying_clashes(self, fn: Any, *args: Any) -> None:
        from mlflow.exceptions import MlflowException

        for attempt in range(_CONFLICT_RETRIES):
            try:
                self._run(fn, *args)
                return
            except MlflowException as err:
                if not _UNIQUE_CLASH.search(str(err)) or attempt == _CONFLICT_RETRIES - 1:
                    raise
                time.sleep(random.uniform(0.05, 0.2) * (attempt + 1))

    def delete_version(self, name: str, version: str) -> None:
        self._call(self.client.delete_model_version, name, version)

    def load_model(self, uri: str, runner: ModelRunner) -> Any:
        """The logged model (a local folder or any model URI): an OnnxModel, or the native
        model loaded in ``runner``'s child (a RemoteModel)."""
        if (Path(uri) / "MLmodel").is_file():
            return load_logged_model(Path(uri), runner)
        with tempfile.TemporaryDirectory(prefix="mlops-model-") as tmp:
            return load_logged_model(self.download_model(uri, Path(tmp)), runner)

    def download_model(self, uri: str, dest: Path) -> Path:
        """The model's files (MLmodel, model.skops, ...) in ``dest``."""
        import mlflow.artifacts

        dest.mkdir(parents=True, exist_ok=True)
        return Path(
            self._transfer(
                mlflow.artifacts.download_artifacts,
                artifact_uri=uri,
                dst_path=str(dest),
                tracking_uri=self.uri,  # not the process's global URI: another registry's
                registry_uri=self.uri,
            )
        )

    def download_artifacts(self, run_id: str, path: str, dest: Path) -> Path:
        """The run's artifacts under ``path`` into ``dest``; the local folder they are in."""
        import mlflow.artifacts

        dest.mkdir(parents=True, exist_ok=True)
        return Path(
            self._transfer(
                mlflow.artifacts.download_artifacts,
                run_id=run_id,
                artifact_path=path,
                dst_path=str(dest),
                tracking_uri=self.uri,
            )
        )

    def log_artifacts(self, run_id: str, folder: Path, artifact_path: str) -> None:
        self._transfer(self.client.log_artifacts, run_id, str(folder), artifact_path)

    def read_artifact_text(self, run_id: str, path: str) -> str | None:
        """A small text artifact of a run, or None when the run has none at that path. Read
        from this registry's store (``load_text`` would take the process's global tracking URI,
        which another registry opened in the same process may have set)."""
        import mlflow.artifacts
        from mlflow.exceptions import MlflowException

        with tempfile.TemporaryDirectory(prefix="mlops-artifact-") as tmp:
            try:
                local = mlflow.artifacts.download_artifacts(
                    run_id=run_id, artifact_path=path, dst_path=tmp, tracking_uri=self.uri
                )
                return Path(local).read_text("utf-8") if Path(local).is_file() else None
            except (MlflowException, OSError, UnicodeDecodeError):
                return None

    def list_artifacts(self, run_id: str, path: str) -> list[str]:
        """Paths of the files right under ``path`` in a run's artifacts (none: an empty list)."""
        found = self._transfer(self.client.list_artifacts, run_id, path)
        return sorted(f.path for f in found if not f.is_dir)

    def log_metrics(self, run_id: str, metrics: dict[str, float]) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        batch = [Metric(k, float(v), now, 0) for k, v in metrics.items()]
        self._call(self.client.log_batch, run_id, metrics=batch)


def _unquotable(*texts: str) -> bool:
    """A quote, backtick or backslash would end its string or key in an MLflow filter."""
    return any(c in text for text in texts for c in "'`\\")


def _version_record(v: ModelVersion) -> VersionRecord:
    return VersionRecord(
        name=v.name,
        version=str(v.version),
        run_id=v.run_id,
        source=v.source or "",
        tags=dict(v.tags),
        aliases=tuple(getattr(v, "aliases", None) or ()),
    )
