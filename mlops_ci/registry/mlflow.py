"""MLflow adapter of the registry port: tracking runs, logged models, registry versions, aliases."""

from __future__ import annotations

import dataclasses
import logging
import os
import random
import re
import tempfile
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlops_ci.credentials import redact_logs, redact_urls, safe_url
from mlops_ci.errors import InputError, ServiceError
from mlops_ci.registry import (
    EVALUATION_ARTIFACT,
    TAG_CACHE_KEY,
    TAG_COMPLETE,
    TAG_MODEL_URI,
    NewRun,
    RunRecord,
    VersionRecord,
)
from mlops_ci.registry.mlflowmodel import (
    load_logged_model,
    load_run_model,
    log_model,
    model_signature,
)
from mlops_ci.registry.tracking import URI_FORMS, redact, resolve_tracking_uri
from mlops_ci.runner import ModelRunner

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Run
    from mlflow.entities.model_registry import ModelVersion

    from mlops_ci.config.types import Config

# Bounded retries so a dead server fails in seconds, not minutes (users may override).
# A write that lost a race on a unique key (another process's write of the same row) is retried.
_CONFLICT_RETRIES = 5
# How SQLite, PostgreSQL and MySQL (through SQLAlchemy and MLflow's server) word that clash.
_UNIQUE_CLASH = re.compile(r"IntegrityError|unique constraint|Duplicate entry", re.IGNORECASE)
_HTTP_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "3", "MLFLOW_HTTP_REQUEST_TIMEOUT": "30"}
# A metadata call ends within MLFLOW_HTTP_REQUEST_TIMEOUT plus this, whatever its retries.
_DEADLINE_MARGIN_S = 5.0


def _float_env(name: str, default: float) -> float:
    try:
        value = float(os.environ.get(name, default))
    except ValueError:
        return default
    return value if value > 0 else default


class MlflowRegistry:
    def __init__(
        self, tracking_uri: str, artifact_location: str, source: str = "the tracking URI"
    ) -> None:
        for key, value in _HTTP_DEFAULTS.items():
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

    def describe(self) -> str:
        return redact(self.uri)

    # --- runs ---------------------------------------------------------------------------------

    def _experiment_id(self, name: str, create: bool) -> str | None:
        experiment = self._call(self.client.get_experiment_by_name, name)
        if experiment is not None:
            return str(experiment.experiment_id)
        if not create:
            return None
        from mlflow.exceptions import MlflowException

        try:
            return str(
                self._run(
                    self.client.create_experiment, name, artifact_location=self.artifact_location
                )
            )
        except MlflowException:  # created meanwhile by a concurrent job
            experiment = self._call(self.client.get_experiment_by_name, name)
            if experiment is None:
                raise
            return str(experiment.experiment_id)

    def find_cached_run(self, experiment: str, cache_key: str) -> RunRecord | None:
        return self.find_run_with_tag(experiment, TAG_CACHE_KEY, cache_key)

    def find_run_with_tag(self, experiment: str, key: str, value: str) -> RunRecord | None:
        """The newest complete, finished run of ``experiment`` tagged ``key=value``."""
        exp_id = self._experiment_id(experiment, create=False)
        if exp_id is None:
            return None
        query = (
            f"tags.`{key}` = '{value}' and tags.`{TAG_COMPLETE}` = 'true' "
            "and attributes.status = 'FINISHED'"
        )
        runs = self._call(
            self.client.search_runs, [exp_id], query, max_results=1, order_by=["start_time DESC"]
        )
        return _run_record(runs[0]) if runs else None

    def log_run(self, run: NewRun) -> RunRecord:
        """One run with params, metrics, tags, artifacts and the model; complete or FAILED.
        The model is loaded and checked before the run starts (a bad file records nothing), in
        the model runner's child, never here (this process holds the credentials)."""
        with ModelRunner(run.isolation) as runner:
            model = load_run_model(runner, run)
            signature = model_signature(model, run.example_features)
            evaluation = run.evaluate(model) if run.evaluate is not None else None
            logged: RunRecord = self._transfer(self._logged, run, model, signature, evaluation)
            return logged

    def _logged(self, run: NewRun, model: Any, signature: Any, evaluation: str | None) -> RunRecord:
        import mlflow

        exp_id = self._experiment_id(run.experiment, create=True)
        with mlflow.start_run(experiment_id=exp_id) as active:
            run_id = active.info.run_id
            mlflow.log_params(run.params)
            mlflow.log_metrics(run.metrics)
            mlflow.set_tags(run.tags)
            for folder, path in run.artifacts.items():
                if path.is_dir():  # e.g. a stage's record and outs, under stages/NAME/
                    mlflow.log_artifacts(str(path), artifact_path=folder)
                else:
                    mlflow.log_artifact(str(path), artifact_path=folder)
            if evaluation is not None:
                mlflow.log_text(evaluation, EVALUATION_ARTIFACT)
            model_uri = log_model(model, signature)
            mlflow.set_tags({TAG_MODEL_URI: model_uri, TAG_COMPLETE: "true"})
        return self.get_run(run_id)

    def get_run(self, run_id: str) -> RunRecord:
        from mlflow.exceptions import MlflowException

        try:
            return _run_record(self._run(self.client.get_run, run_id))
        except MlflowException as err:
            if _is_not_found(err):
                raise InputError(
                    f"run '{run_id}' not found in {self.describe()}",
                    hint="pass the run id `mlops-ci train` printed",
                ) from None
            raise self._service_error(err) from None

    # --- registry -----------------------------------------------------------------------------

    def get_version_by_alias(self, name: str, alias: str) -> VersionRecord | None:
        from mlflow.exceptions import MlflowException

        try:
            return _version_record(self._run(self.client.get_model_version_by_alias, name, alias))
        except MlflowException as err:
            if _is_not_found(err):
                return None
            raise self._service_error(err) from None

    def has_model(self, name: str) -> bool:
        from mlflow.exceptions import MlflowException

        try:
            self._run(self.client.get_registered_model, name)
        except MlflowException as err:
            if _is_not_found(err):
                return False
            raise self._service_error(err) from None
        return True

    def get_version(self, name: str, version: str) -> VersionRecord:
        from mlflow.exceptions import MlflowException

        try:
            return _version_record(self._run(self.client.get_model_version, name, version))
        except MlflowException as err:
            if _is_not_found(err):
                if not self.has_model(name):
                    raise InputError(f"there is no model '{name}' in {self.describe()}") from None
                raise InputError(
                    f"model '{name}' has no version '{version}' in {self.describe()}"
                ) from None
            raise self._service_error(err) from None

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

        try:
            self._run(self.client.create_registered_model, name)
        except MlflowException as err:
            if "RESOURCE_ALREADY_EXISTS" not in str(err.error_code):
                raise self._service_error(err) from None
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
        from mlflow.exceptions import MlflowException

        for attempt in range(_CONFLICT_RETRIES):
            try:
                self._run(fn, *args)
                return
            except MlflowException as err:
                if not _UNIQUE_CLASH.search(str(err)) or attempt == _CONFLICT_RETRIES - 1:
                    raise self._service_error(err) from None
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
                mlflow.artifacts.download_artifacts, artifact_uri=uri, dst_path=str(dest)
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
        """A small text artifact of a run, or None when the run has none at that path."""
        import mlflow.artifacts
        from mlflow.exceptions import MlflowException

        try:
            return str(mlflow.artifacts.load_text(f"runs:/{run_id}/{path}"))
        except (MlflowException, OSError):
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

    # --- errors -------------------------------------------------------------------------------
    def _call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """One metadata call: against a server, all its attempts end within the deadline."""
        return self._mapped(self._run, fn, *args, **kwargs)

    def _run(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        if not self.uri.startswith(("http://", "https://")):
            return fn(*args, **kwargs)  # a local store: no network to wait on
        return self._bounded(fn, *args, **kwargs)

    def _transfer(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """An artifact upload or download: as long as bytes flow (each read has its timeout)."""
        return self._mapped(fn, *args, **kwargs)

    def _mapped(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """``fn``, with MLflow's own errors turned into one ServiceError line."""
        from mlflow.exceptions import MlflowException

        try:
            return fn(*args, **kwargs)
        except MlflowException as err:
            raise self._service_error(err) from None

    def _bounded(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """``fn`` in a daemon thread, given up after the deadline. MLflow retries a read that
        timed out like a refused connection, so a server that accepts and never answers held a
        call for every attempt's timeout plus backoff (134 s with the defaults); the deadline
        ends it near the timeout the user set. A call given up may still land on the server
        later; the next step reads what is there, as after any lost answer."""
        per_attempt = _float_env("MLFLOW_HTTP_REQUEST_TIMEOUT", 30.0)
        deadline = per_attempt + _DEADLINE_MARGIN_S
        outcome: dict[str, Any] = {}
        finished = threading.Event()

        def run() -> None:
            try:
                outcome["value"] = fn(*args, **kwargs)
            except BaseException as err:  # handed to the caller's thread
                outcome["error"] = err
            finally:
                finished.set()

        threading.Thread(target=run, name="mlflow-call", daemon=True).start()
        if not finished.wait(deadline):
            what = getattr(fn, "__name__", "a call")
            raise ServiceError(
                f"MLflow at {self.describe()} did not answer {what} within {deadline:g} s "
                f"(MLFLOW_HTTP_REQUEST_TIMEOUT={per_attempt:g} s, plus {_DEADLINE_MARGIN_S:g} s "
                "for retries)",
                hint="check that the server is up and not overloaded, or raise "
                "MLFLOW_HTTP_REQUEST_TIMEOUT",
            )
        if "error" in outcome:
            raise outcome["error"]
        return outcome["value"]

    def _service_error(self, err: Exception) -> ServiceError:
        """One line naming the server (never its credentials) and what went wrong."""
        text = redact_urls(str(err).strip())
        first = text.splitlines()[0] if text else type(err).__name__
        answered = re.search(r"too many (\d{3}) error responses", first)
        if answered:  # it answered, with an error, every time: not a connection problem
            retries = os.environ.get("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "?")
            first = (
                f"answered HTTP {answered.group(1)} to every attempt ({retries} retries, "
                f"MLFLOW_HTTP_REQUEST_MAX_RETRIES) of " + first.split(" failed with exception")[0]
            )
        elif "Max retries exceeded" in first or "Connection refused" in first:
            first = "cannot connect (" + first.split(" failed with exception")[0] + ")"
        return ServiceError(
            f"MLflow at {self.describe()} failed: {first[:300]}",
            hint="check MLFLOW_TRACKING_URI and that the server is reachable",
        )


def _is_not_found(err: Exception) -> bool:
    code = str(getattr(err, "error_code", ""))
    return "RESOURCE_DOES_NOT_EXIST" in code or (
        "INVALID_PARAMETER_VALUE" in code and "not found" in str(err)
    )


def _run_record(run: Run) -> RunRecord:
    return RunRecord(
        run_id=run.info.run_id,
        status=run.info.status,
        params=dict(run.data.params),
        metrics={k: float(v) for k, v in run.data.metrics.items()},
        tags=dict(run.data.tags),
    )


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
