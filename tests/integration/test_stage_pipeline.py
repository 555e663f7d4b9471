"""Pipelines of stages end to end against a real `mlflow server`: examples/stages (prepare →
featurize → train) with its cache asserted stage by stage, a clean checkout restored from the
MLflow artifacts, and a DVC project (dvc.yaml + params.yaml) used as it is."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from mlops_ci.config.types import load_config
from mlops_ci.pipeline.cache import manifest_of
from mlops_ci.registry import open_registry
from mlops_ci.steps.compare import compare
from mlops_ci.steps.report import report
from mlops_ci.steps.train import TrainResult, dry_run, train
from tests.support.mlflow_server import mlflow_server
from tests.support.store import copy_example

pytestmark = pytest.mark.slow

OUTS = ["data/prepared", "data/features", "outputs/model.joblib"]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with mlflow_server(tmp_path_factory.mktemp("mlflow-server")) as url:
        yield url


@pytest.fixture
def team(server: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", server)
    # A DVC command says `python`: the interpreter of this test, with pandas and scikit-learn.
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    return server


def named(project: Path, name: str) -> Path:
    cfg = project / "mlops.yaml"
    text = cfg.read_text()
    cfg.write_text(text.replace("name: iris-stages", f"name: {name}", 1))
    return project


def run(project: Path) -> TrainResult:
    config = load_config(project)
    return train(config, open_registry(config))


def states(result: TrainResult) -> dict[str, str]:
    return {s.name: s.state for s in result.stages}


def clean_checkout(source: Path, dest: Path) -> Path:
    """What git would check out: the sources, without .mlops and without any out."""
    ignore = shutil.ignore_patterns(".mlops", "prepared", "features", "outputs", "__pycache__")
    shutil.copytree(source, dest, ignore=ignore)
    return dest


def test_each_stage_reruns_only_when_what_it_reads_changed(team: str, tmp_path: Path) -> None:
    project = named(copy_example(tmp_path / "a", "stages"), f"stages-{tmp_path.name[-10:]}")
    first = run(project)
    assert states(first) == {"prepare": "ran", "featurize": "ran", "train": "ran"}
    assert not first.cached and "no earlier run" in first.stages[0].why
    outs = manifest_of(project, OUTS)

    # A second identical push: nothing runs, the run itself is reused.
    again = run(project)
    assert states(again) == {"prepare": "cached", "featurize": "cached", "train": "cached"}
    assert again.cached and again.run_id == first.run_id

    # The training code changes: train alone reruns.
    with (project / "train.py").open("a") as code:
        code.write("# a comment changes the file, so the stage's key\n")
    plan = dry_run(load_config(project), open_registry(load_config(project)))
    assert [(s.name, s.state) for s in plan] == [
        ("prepare", "cached"), ("featurize", "cached"), ("train", "would run"),
    ]  # fmt: skip
    assert plan[2].why == "deps changed: train.py (modified)"
    code_change = run(project)
    assert states(code_change) == {"prepare": "cached", "featurize": "cached", "train": "ran"}
    assert not code_change.cached and code_change.run_id != first.run_id

    # The raw data changes: all three rerun.
    with (project / "data" / "raw" / "iris.csv").open("a") as raw:
        raw.write("5.1,3.3,1.6,0.2,setosa\n")
    data_change = run(project)
    assert states(data_change) == {"prepare": "ran", "featurize": "ran", "train": "ran"}
    assert data_change.data_fingerprint != first.data_fingerprint

    # The run records every stage: params stage.NAME.*, seconds, the graph in lineage.
    registry = open_registry(load_config(project))
    record = registry.get_run(data_change.run_id)
    assert record.params["stage.prepare.cached"] == "false"
    assert record.params["stage.train.command"] == "{python} train.py"
    assert record.params["test_size"] == "0.3"
    assert record.metrics["stage.featurize.seconds"] > 0
    graph = json.loads(registry.read_artifact_text(data_change.run_id, "lineage/stages.json") or "")
    assert graph["training"] == "train"
    assert [(s["name"], s["upstream"]) for s in graph["stages"]] == [
        ("prepare", []), ("featurize", ["prepare"]), ("train", ["featurize"]),
    ]  # fmt: skip
    train_stage = graph["stages"][2]
    assert (
        train_stage["deps"]["data/features/train.csv"]
        == outs_of(project)["data/features/train.csv"]
    )

    # The report draws the stages: which ran (all three, after the data change).
    config = load_config(project)
    compare(config, registry, data_change.run_id)
    text = report(config, registry, "pr").markdown
    assert "**Pipeline stages** (this run)" in text and "flowchart LR" in text
    assert "s0 --> s1" in text and "s1 --> s2" in text and "train · model · ran " in text

    # A CI runner with an empty disk: every stage cached, outs restored from MLflow.
    fresh = clean_checkout(project, tmp_path / "b")
    assert not (fresh / "data" / "features").exists()
    said = dry_run(load_config(fresh), open_registry(load_config(fresh)))
    assert [s.state for s in said] == ["cached"] * 3
    assert all(s.why.startswith("unchanged; outs in MLflow run ") for s in said)
    restored = run(fresh)
    assert restored.cached and restored.run_id == data_change.run_id
    assert all("restored from MLflow run" in s.why for s in restored.stages)
    assert manifest_of(fresh, OUTS) == manifest_of(project, OUTS)
    assert outs != manifest_of(project, OUTS)  # the data change did change the outs
    # The records came along: this disk now knows the stages, and says why one would rerun.
    with (fresh / "train.py").open("a") as code:
        code.write("# changed on the fresh checkout\n")
    said = dry_run(load_config(fresh), open_registry(load_config(fresh)))
    assert [(s.state, s.why) for s in said] == [
        ("cached", "unchanged; outs in .mlops/cache"),
        ("cached", "unchanged; outs in .mlops/cache"),
        ("would run", "deps changed: train.py (modified)"),
    ]


def outs_of(project: Path) -> dict[str, str]:
    return manifest_of(project, OUTS)


DVC_YAML = """\
stages:
  prepare:
    cmd: python src/prepare.py data/raw.csv data/prepared
    deps:
    - data/raw.csv
    - src/prepare.py
    params:
    - prepare.split
    - prepare.seed
    outs:
    - data/prepared
  train:
    cmd:
    - mkdir -p models
    - python src/train.py data/prepared models/model.joblib
    deps:
    - data/prepared
    - src/train.py
    params:
    - train.C
    outs:
    - models/model.joblib
  evaluate:
    cmd: python src/evaluate.py models/model.joblib data/prepared > eval/metrics.json
    deps:
    - models/model.joblib
    - data/prepared
    - src/evaluate.py
    metrics:
    - eval/metrics.json:
        cache: false
"""
PARAMS_YAML = "prepare:\n  split: 0.3\n  seed: 0\ntrain:\n  C: 1.0\n"
PREPARE = """\
import sys
from pathlib import Path

import pandas as pd
import yaml

params = yaml.safe_load(open("params.yaml"))["prepare"]
rows = pd.read_csv(sys.argv[1]).dropna()
test = rows.sample(frac=params["split"], random_state=params["seed"])
out = Path(sys.argv[2])
out.mkdir(parents=True, exist_ok=True)
rows.drop(index=test.index).to_csv(out / "train.csv", index=False)
test.to_csv(out / "test.csv", index=False)
"""
TRAIN = """\
import sys

import joblib
import pandas as pd
import yaml
from sklearn.linear_model import LogisticRegression

C = yaml.safe_load(open("params.yaml"))["train"]["C"]
rows = pd.read_csv(sys.argv[1] + "/train.csv")
model = LogisticRegression(C=C, max_iter=1000).fit(rows.drop(columns="species"), rows["species"])
joblib.dump(model, sys.argv[2])
"""
EVALUATE = """\
import json
import sys

import joblib
import pandas as pd

rows = pd.read_csv(sys.argv[2] + "/test.csv")
model = joblib.load(sys.argv[1])
print(json.dumps({"accuracy": model.score(rows.drop(columns="species"), rows["species"])}))
"""


def dvc_project(folder: Path, name: str) -> Path:
    raw = Path(__file__).parents[2] / "examples" / "stages" / "data" / "raw" / "iris.csv"
    (folder / "data").mkdir(parents=True)
    (folder / "src").mkdir()
    (folder / "eval").mkdir()
    shutil.copyfile(raw, folder / "data" / "raw.csv")
    (folder / "src" / "prepare.py").write_text(PREPARE)
    (folder / "src" / "train.py").write_text(TRAIN)
    (folder / "src" / "evaluate.py").write_text(EVALUATE)
    (folder / "dvc.yaml").write_text(DVC_YAML)
    (folder / "params.yaml").write_text(PARAMS_YAML)
    (folder / "mlops.yaml").write_text(
        f"version: 1\nmodel: {{name: {name}}}\n"
        "train: {outputs: {model: models/model.joblib}}\n"
        "pipeline: {dvc: dvc.yaml}\n"
        "evaluate: {data: data/prepared/test.csv, target: species, metrics: [accuracy]}\n"
    )
    return folder


def test_a_dvc_pipeline_is_taken_as_it_is(team: str, tmp_path: Path) -> None:
    project = dvc_project(tmp_path / "dvc", f"dvc-{tmp_path.name[-10:]}")
    cli = subprocess.run(
        [sys.executable, "-m", "mlops_ci", "train", "-c", str(project)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert cli.returncode == 0, cli.stdout + cli.stderr
    assert "stage prepare: ran" in cli.stdout and "stage evaluate: ran" in cli.stdout
    assert json.loads((project / "eval" / "metrics.json").read_text())["accuracy"] > 0.8

    # A param of params.yaml that only train reads: prepare stays cached; evaluate (downstream
    # of the model) and train rerun.
    (project / "params.yaml").write_text(PARAMS_YAML.replace("C: 1.0", "C: 0.5"))
    changed = run(project)
    assert states(changed) == {"prepare": "cached", "train": "ran", "evaluate": "ran"}
    assert changed.stages[1].why == "params changed: train.C 1.0 → 0.5"
    record = open_registry(load_config(project)).get_run(changed.run_id)
    assert record.params["train.C"] == "0.5" and record.params["prepare.split"] == "0.3"

    # The uncached metrics file is not restorable: without it, evaluate must run again.
    (project / "eval" / "metrics.json").unlink()
    plan = dry_run(load_config(project), open_registry(load_config(project)))
    assert [(s.name, s.state) for s in plan] == [
        ("prepare", "cached"), ("train", "cached"), ("evaluate", "would run"),
    ]  # fmt: skip
    assert plan[2].why == "uncached out 'eval/metrics.json' is missing"
