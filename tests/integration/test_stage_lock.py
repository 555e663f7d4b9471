"""The lock file as the trust root of the stage cache, against a real `mlflow server`: a run
planted in the experiment with a stage's tag and key supplies no bytes the lock file does not
name, a planted record whose name is a path writes nothing outside the project, and a blob
edited in `.mlops/cache` is fetched again, never restored silently."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from mlops_ci.config.types import load_config
from mlops_ci.errors import InputError, MlopsError
from mlops_ci.pipeline.cache import StageCache, manifest_of
from mlops_ci.registry import TAG_COMPLETE, open_registry
from mlops_ci.steps.train import TrainResult, dry_run, train
from tests.support.mlflow_server import mlflow_server
from tests.support.store import copy_example

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

PREPARED = ["data/prepared/test.csv", "data/prepared/train.csv"]
# Poisoned rows, each labelled as another species (good enough to train on: the attack is that
# nobody would notice).
PLANTED = "sepal_length,sepal_width,petal_length,petal_width,species\n" + "".join(
    f"{5 + i / 10},{3 + i / 20},{1 + i / 2},{0.2 + i / 10},{species}\n"
    for i, species in enumerate(["virginica", "setosa", "versicolor"] * 8)
)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with mlflow_server(tmp_path_factory.mktemp("mlflow-server")) as url:
        yield url


@pytest.fixture
def team(server: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", server)
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    return server


def stages_project(folder: Path) -> Path:
    project = copy_example(folder, "stages")
    cfg = project / "mlops.yaml"
    name = f"lock-{folder.parent.name[-12:]}-{folder.name}"
    cfg.write_text(cfg.read_text().replace("name: iris-stages", f"name: {name}", 1))
    return project


def run(project: Path, said: list[str] | None = None) -> TrainResult:
    config = load_config(project)
    return train(config, open_registry(config), notify=said.append if said is not None else None)


def clean_checkout(source: Path, dest: Path) -> Path:
    """What git would check out: the sources and mlops.lock, without .mlops and any out."""
    ignore = shutil.ignore_patterns(".mlops", "prepared", "features", "outputs", "__pycache__")
    shutil.copytree(source, dest, ignore=ignore)
    return dest


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def plant(url: str, project: Path, key: str, name: str = "prepare") -> str:
    """A finished run in the project's experiment tagged as the holder of stage prepare's outs
    for ``key``: a record consistent with its own files, which are not what prepare writes."""
    client = MlflowClient(url)
    experiment = load_config(project).registry.experiment
    found = client.get_experiment_by_name(experiment)
    exp_id = found.experiment_id if found else client.create_experiment(experiment)
    tags = {"mlops.stage.prepare.outs": key, TAG_COMPLETE: "true"}
    run_id: str = client.create_run(exp_id, tags=tags).info.run_id
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        record = {"name": name, "key": key, "outs": {p: sha(PLANTED) for p in PREPARED}}
        (folder / "record.json").write_text(json.dumps(record))
        for rel in PREPARED:
            (folder / "outs" / rel).parent.mkdir(parents=True, exist_ok=True)
            (folder / "outs" / rel).write_text(PLANTED)
        client.log_artifacts(run_id, str(folder), "stages/prepare")
    client.set_terminated(run_id, "FINISHED")
    return run_id


def prepare_key(project: Path) -> str:
    config = load_config(project)
    return dry_run(config, open_registry(config))[0].key


def test_a_planted_holder_run_restores_nothing_and_the_stage_runs(
    team: str, tmp_path: Path
) -> None:
    project = stages_project(tmp_path / "a")
    planted = plant(team, project, prepare_key(project))
    # No lock file yet: the planted run cannot supply a byte; prepare runs, and says why.
    first = run(project)
    prepare = first.stages[0]
    assert prepare.state == "ran", prepare.why
    assert prepare.why == (
        f"mlops.lock has no entry for it: the outs in MLflow run {planted} are not taken"
    )
    assert PLANTED not in (project / PREPARED[1]).read_text()
    assert (project / "mlops.lock").is_file()

    # A clean checkout with the lock file; a newer planted run holds prepare's locked key.
    fresh = clean_checkout(project, tmp_path / "b")
    newer = plant(team, fresh, prepare.key)
    config = load_config(fresh)
    said = dry_run(config, open_registry(config))
    assert (said[0].state, said[0].why) == (
        "would run", f"MLflow run {newer} holds other outs than mlops.lock names",
    )  # fmt: skip
    restored = run(fresh)
    assert [(s.name, s.state) for s in restored.stages] == [
        ("prepare", "ran"), ("featurize", "cached"), ("train", "cached"),
    ]  # fmt: skip
    assert restored.stages[1].why == f"unchanged; outs restored from MLflow run {first.run_id}"
    assert manifest_of(fresh, ["data"]) == manifest_of(project, ["data"])


def test_a_planted_record_named_as_a_path_writes_nothing_outside_the_project(
    team: str, tmp_path: Path
) -> None:
    project = stages_project(tmp_path / "a")
    first = run(project)
    key = first.stages[0].key
    for name in (str(tmp_path / "outside"), "../../../../outside"):
        fresh = clean_checkout(project, tmp_path / "b")
        planted = plant(team, fresh, key, name=name)
        refused = None
        try:
            run(fresh)
        except MlopsError as err:
            refused = err
        assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b"]  # nothing outside
        assert not (fresh / "data" / "prepared").exists()  # nor inside
        assert isinstance(refused, InputError)
        assert str(refused).startswith(f"MLflow run {planted}: stages/prepare/record.json: names ")
        shutil.rmtree(fresh)


def test_a_tampered_local_blob_is_fetched_again_not_restored(team: str, tmp_path: Path) -> None:
    project = stages_project(tmp_path / "a")
    first = run(project)
    truth = (project / PREPARED[1]).read_text()
    cache = StageCache(project / ".mlops" / "cache")
    cache.blob(sha(truth)).write_text(PLANTED)
    shutil.rmtree(project / "data" / "prepared")
    said: list[str] = []
    again = run(project, said)
    note = f"{PREPARED[1]} in .mlops/cache did not match its sha256 in mlops.lock"
    assert again.stages[0].state == "cached"
    assert again.stages[0].why == (
        f"unchanged; outs restored from MLflow run {first.run_id} (re-fetched: {note})"
    )
    assert f"stage prepare: {note}; re-fetched from MLflow run {first.run_id}" in said
    assert (project / PREPARED[1]).read_text() == truth
    assert cache.blob(sha(truth)).read_text() == truth
