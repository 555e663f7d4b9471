"""The MLflow adapter's runs on an embedded store: made RUNNING with their tags, logged by the
client into the run's own experiment (no active run of the process), ended FINISHED, and the
RUNNING runs of a train found by its tag and ended."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mlflow
import pytest

from mlops_ci.registry import TAG_COMPLETE, TAG_MODEL_URI, TAG_TRAIN_ID, NewRun, mlflowruns
from mlops_ci.registry.mlflow import MlflowRegistry
from tests.support.store import seed_store


@pytest.fixture
def registry(tmp_path: Path) -> MlflowRegistry:
    return MlflowRegistry(f"sqlite:///{seed_store(tmp_path / 'm.db')}", str(tmp_path / "a"))


def test_a_run_is_logged_by_the_client_in_its_experiment_and_ended_finished(
    registry: MlflowRegistry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_id = registry.start_run("iris", {TAG_TRAIN_ID: "t1", "mlops.model.name": "iris"})
    assert registry.get_run(run_id).status == "RUNNING"
    asked: dict[str, Any] = {}

    def log_model(model: Any, signature: Any, run: str, model_id: str) -> str:
        asked.update(run=run, model_id=model_id)
        return f"models:/{model_id}"

    monkeypatch.setattr(mlflowruns, "log_model", log_model)
    lineage = tmp_path / "manifest.json"
    lineage.write_text("{}")
    new = NewRun(
        experiment="iris",
        artifact_location=str(tmp_path / "a"),
        params={"C": "0.5"},
        metrics={"cv_accuracy": 0.9},
        tags={"mlops.cache_key": "k1"},
        model_file=tmp_path / "model.joblib",
        artifacts={"lineage": lineage},
        run_id=run_id,
    )
    record = registry._logged(run_id, new, object(), None, '{"rows": 3}')
    assert (record.status, record.params, record.metrics) == (
        "FINISHED",
        {"C": "0.5"},
        {"cv_accuracy": 0.9},
    )
    assert record.tags[TAG_COMPLETE] == "true" and record.tags[TAG_TRAIN_ID] == "t1"
    assert record.tags[TAG_MODEL_URI] == f"models:/{asked['model_id']}" and asked["run"] == run_id
    model = registry.client.get_logged_model(asked["model_id"])
    assert model.experiment_id == registry.client.get_run(run_id).info.experiment_id != "0"
    assert mlflow.active_run() is None, "the fluent API's active run is never used"
    assert registry.list_artifacts(run_id, "lineage") == ["lineage/manifest.json"]
    assert registry.read_artifact_text(run_id, "mlops/evaluation.json") == '{"rows": 3}'
    assert registry.find_cached_run("iris", "k1") == record


def test_the_running_runs_of_a_train_are_ended_by_its_tag(registry: MlflowRegistry) -> None:
    lost = registry.start_run("iris", {TAG_TRAIN_ID: "t1"})  # its creation's answer was lost
    done = registry.start_run("iris", {TAG_TRAIN_ID: "t1"})
    other = registry.start_run("iris", {TAG_TRAIN_ID: "t2"})
    registry.client.set_terminated(done, "FINISHED")
    assert registry.find_cached_run("iris", "k1") is None
    assert registry.end_runs("iris", TAG_TRAIN_ID, "t1", "KILLED") == [lost]
    status = {r: registry.get_run(r).status for r in (lost, done, other)}
    assert status == {lost: "KILLED", done: "FINISHED", other: "RUNNING"}
    assert registry.end_runs("iris", TAG_TRAIN_ID, "t1", "KILLED") == []
    assert registry.end_runs("no-such-experiment", TAG_TRAIN_ID, "t2", "FAILED") == []
