"""In-memory fakes of the ports, shared by the unit tests (no MLflow, no disk registry)."""

from __future__ import annotations

import dataclasses
import itertools
from pathlib import Path
from typing import Any

from mlops_ci.errors import InputError
from mlops_ci.model.files import load_model_file
from mlops_ci.registry import (
    EVALUATION_ARTIFACT,
    TAG_COMPLETE,
    TAG_MODEL_URI,
    NewRun,
    RunRecord,
    VersionRecord,
)


class InMemoryRegistry:
    """Implements mlops_ci.registry.ModelRegistry with dicts; models are kept as objects."""

    def __init__(self) -> None:
        self.runs: dict[str, RunRecord] = {}
        self.models: dict[str, Any] = {}
        self.versions: dict[str, dict[str, VersionRecord]] = {}
        self.aliases: dict[str, dict[str, str]] = {}
        self.artifacts: dict[str, bytes] = {}
        self._ids = itertools.count(1)

    # test helpers -------------------------------------------------------------------------
    def add_run(
        self, model: Any, metrics: dict[str, float] | None = None, **tags: str
    ) -> RunRecord:
        run_id = f"run{next(self._ids)}"
        uri = f"models:/m-{run_id}"
        self.models[uri] = model
        record = RunRecord(
            run_id,
            "FINISHED",
            {},
            dict(metrics or {}),
            {**tags, TAG_MODEL_URI: uri, TAG_COMPLETE: "true"},
        )
        self.runs[run_id] = record
        return record

    # port ---------------------------------------------------------------------------------
    def find_cached_run(self, experiment: str, cache_key: str) -> RunRecord | None:
        return self.find_run_with_tag(experiment, "mlops.cache_key", cache_key)

    def find_run_with_tag(self, experiment: str, key: str, value: str) -> RunRecord | None:
        hits = [
            r
            for r in self.runs.values()
            if r.tags.get(key) == value and r.status == "FINISHED" and r.tags.get(TAG_COMPLETE)
        ]
        return hits[-1] if hits else None

    def start_run(self, experiment: str, tags: dict[str, str]) -> str:
        run_id = f"run{next(self._ids)}"
        self.runs[run_id] = RunRecord(run_id, "RUNNING", {}, {}, dict(tags))
        return run_id

    def end_runs(self, experiment: str, key: str, value: str, status: str) -> list[str]:
        ended = [
            r.run_id
            for r in self.runs.values()
            if r.status == "RUNNING" and r.tags.get(key) == value
        ]
        for run_id in ended:
            self.runs[run_id] = dataclasses.replace(self.runs[run_id], status=status)
        return ended

    def log_run(self, run: NewRun) -> RunRecord:
        model = load_model_file(run.model_file, run.task)
        record = self.add_run(model, run.metrics, **run.tags)
        if run.run_id is not None:  # logged into the run start_run made
            del self.runs[record.run_id]
            started = self.runs[run.run_id].tags
            record = dataclasses.replace(record, run_id=run.run_id, tags={**started, **record.tags})
            self.runs[run.run_id] = record
        record.params.update(run.params)
        for folder, path in run.artifacts.items():
            if path.is_dir():
                self.log_artifacts(record.run_id, path, folder)
            else:
                self.artifacts[f"{record.run_id}/{folder}/{path.name}"] = path.read_bytes()
        evaluation = run.evaluate(model) if run.evaluate is not None else None
        if evaluation is not None:
            self.artifacts[f"{record.run_id}/{EVALUATION_ARTIFACT}"] = evaluation.encode()
        return record

    def get_run(self, run_id: str) -> RunRecord:
        if run_id not in self.runs:
            raise InputError(f"run '{run_id}' not found")
        return self.runs[run_id]

    def get_version_by_alias(self, name: str, alias: str) -> VersionRecord | None:
        number = self.aliases.get(name, {}).get(alias)
        return self.get_version(name, number) if number else None

    def search_versions(self, name: str, tags: dict[str, str], limit: int) -> list[VersionRecord]:
        found = [
            self.get_version(name, number)
            for number in sorted(self.versions.get(name, {}), key=int, reverse=True)
            if all(self.versions[name][number].tags.get(k) == v for k, v in tags.items())
        ]
        return found[:limit]

    def has_model(self, name: str) -> bool:
        return name in self.versions

    def get_version(self, name: str, version: str) -> VersionRecord:
        try:
            found = self.versions[name][version]
        except KeyError:
            raise InputError(f"model '{name}' has no version '{version}'") from None
        held = tuple(sorted(a for a, v in self.aliases.get(name, {}).items() if v == version))
        return dataclasses.replace(found, aliases=held)  # the same tags dict: updates land

    def find_versions_by_run(self, name: str, run_id: str) -> list[VersionRecord]:
        return [v for v in self.versions.get(name, {}).values() if v.run_id == run_id]

    def find_versions_with_tag(self, name: str, key: str) -> list[VersionRecord]:
        return [v for v in self.versions.get(name, {}).values() if key in v.tags]

    def create_version(
        self, name: str, run: RunRecord, tags: dict[str, str], description: str
    ) -> VersionRecord:
        versions = self.versions.setdefault(name, {})
        number = str(len(versions) + 1)
        versions[number] = VersionRecord(name, number, run.run_id, run.model_uri or "", dict(tags))
        return versions[number]

    def set_alias(self, name: str, alias: str, version: str) -> None:
        self.get_version(name, version)
        self.aliases.setdefault(name, {})[alias] = version

    def set_version_tags(self, name: str, version: str, tags: dict[str, str]) -> None:
        self.get_version(name, version).tags.update(tags)

    def delete_version(self, name: str, version: str) -> None:
        self.get_version(name, version)
        del self.versions[name][version]
        self.aliases[name] = {a: v for a, v in self.aliases.get(name, {}).items() if v != version}

    def load_model(self, uri: str, runner: Any) -> Any:
        """The test's own model object, in process: the fakes hold trusted test models (the
        model runner is exercised against the real registry in tests/integration)."""
        import joblib

        if Path(uri).is_dir():  # a folder download_model wrote
            return joblib.load(Path(uri) / "model.joblib")
        return self.models[uri]

    def download_model(self, uri: str, dest: Path) -> Path:
        import joblib

        dest.mkdir(parents=True, exist_ok=True)
        if not (dest / "model.joblib").exists():
            joblib.dump(self.models[uri], dest / "model.joblib")
        return dest

    def log_artifacts(self, run_id: str, folder: Path, artifact_path: str) -> None:
        for file in folder.rglob("*"):
            if file.is_file():
                self.artifacts[f"{run_id}/{artifact_path}/{file.relative_to(folder)}"] = (
                    file.read_bytes()
                )

    def read_artifact_text(self, run_id: str, path: str) -> str | None:
        data = self.artifacts.get(f"{run_id}/{path}")
        return data.decode() if data is not None else None

    def download_artifacts(self, run_id: str, path: str, dest: Path) -> Path:
        prefix = f"{run_id}/{path.rstrip('/')}/"
        for key, data in self.artifacts.items():
            if key.startswith(prefix):
                target = dest / path / key.removeprefix(prefix)
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(data)
        return dest / path

    def list_artifacts(self, run_id: str, path: str) -> list[str]:
        prefix = f"{run_id}/{path.rstrip('/')}/"
        return sorted(
            k.removeprefix(f"{run_id}/")
            for k in self.artifacts
            if k.startswith(prefix) and "/" not in k.removeprefix(prefix)
        )

    def log_metrics(self, run_id: str, metrics: dict[str, float]) -> None:
        self.runs[run_id].metrics.update(metrics)

    def describe(self) -> str:
        return "memory://"
