"""Drift with the real parts: the production version found in a real MLflow store and loaded
only in the model runner, `mlops-ci drift` as a user runs it, a free-text column beside the
model's, and the report naming the aliases as the registry has them after a promotion."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from mlops_ci.config.types import Config, load_config
from mlops_ci.registry.mlflow import MlflowRegistry
from mlops_ci.runner import ModelRunner
from mlops_ci.steps.report import report
from tests.integration.conftest import Packaged
from tests.support.helpers import run_cli
from tests.unit.monitor.test_text import texts

pytestmark = pytest.mark.slow


def promoted_copy(packaged: Packaged, dest: Path, version: str) -> tuple[Config, MlflowRegistry]:
    """The shared project copied (its store with it), ``version`` promoted in the copy."""
    project = Path(shutil.copytree(packaged.project, dest))
    config = load_config(project)
    registry = MlflowRegistry.for_config(config, honour_env=False)
    registry.set_alias(config.model.name, config.registry.production_alias, version)
    return config, registry


def served(config: Config, registry: MlflowRegistry, rows: pd.DataFrame, folder: Path) -> Path:
    """``rows`` logged as serve logs them: the production version's answers (scored in a model
    runner, as serve would), and a shadow version's records beside them."""
    version = registry.get_version_by_alias(config.model.name, "production")
    assert version is not None
    with ModelRunner("auto") as runner:
        answers = registry.load_model(version.source, runner).predict(rows.drop(columns=["review"]))
    folder.mkdir()
    with open(folder / "inputs-20260101T000000-1-0001.jsonl", "w") as fh:
        for i, (record, label) in enumerate(zip(rows.to_dict("records"), answers, strict=True)):
            logged: dict[str, Any] = {"request_id": f"r{i}", "row": 0, "inputs": record}
            fh.write(json.dumps({**logged, "version": version.version, "prediction": label}))
            shadow = {**logged, "version": "0", "shadow": True, "prediction": "setosa"}
            fh.write("\n" + json.dumps(shadow) + "\n")
    return folder


@pytest.mark.timeout(300)
def test_drift_scores_the_production_version_in_the_runner_and_reads_text_as_text(
    packaged: Packaged, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    config, registry = promoted_copy(packaged, tmp_path / "iris", "1")
    train = pd.read_csv(config.root / "data" / "train.csv")
    reference = train.sample(2000, replace=True, random_state=0).reset_index(drop=True)
    reference["review"] = texts(2000, seed=1)
    reference.to_csv(tmp_path / "reference.csv", index=False)
    rows = train.sample(600, replace=True, random_state=1).drop(columns=["species"])
    rows = rows.reset_index(drop=True).assign(review=texts(600, seed=2))
    log = served(config, registry, rows, tmp_path / "log")
    code = run_cli("drift", "-c", str(config.root), "--reference", str(tmp_path / "reference.csv"),
                   "--current", str(log))  # fmt: skip
    record = json.loads((config.root / ".mlops" / "drift.json").read_text())
    by_name = {f["name"]: f for f in record["features"]}
    prediction, review = by_name["prediction"], by_name["review"]
    print(f"prediction PSI {prediction['psi']:.4f}, text PSI {review['psi']:.4f}")
    assert code == 0 and record["verdict"] == "no-drift"
    assert prediction["current_rows"] == 600 and prediction["reference_rows"] == 2000
    assert prediction["psi"] < 0.05 and not prediction["drifted"]
    assert record["prediction"] == (
        "logged predictions against production (iris-classifier v1)'s predictions on the "
        "reference rows (scored now)"
    )
    assert review["kind"] == "text" and review["test"] == "length+tokens"
    assert review["psi"] < 0.1 and not review["drifted"]
    other = rows.assign(review=texts(600, seed=3, vocabulary=9))
    log = served(config, registry, other, tmp_path / "other")
    code = run_cli("drift", "-c", str(config.root), "--reference", str(tmp_path / "reference.csv"),
                   "--current", str(log))  # fmt: skip
    record = json.loads((config.root / ".mlops" / "drift.json").read_text())
    assert code == 1 and [f["name"] for f in record["features"] if f["drifted"]] == ["review"]
    # on evaluate.data, the predictions train recorded for exactly its rows: no model loaded
    log = served(config, registry, rows, tmp_path / "again")
    evaluation = str(config.root / "data" / "test.csv")
    code = run_cli("drift", "-c", str(config.root), "--reference", evaluation,
                   "--current", str(log))  # fmt: skip
    assert code in (0, 1)  # 60 reference rows: its features' PSI is noisy; not the point here
    record = json.loads((config.root / ".mlops" / "drift.json").read_text())
    assert record["prediction"].endswith("(as its train recorded them)")
    (prediction,) = [f for f in record["features"] if f["kind"] == "prediction"]
    assert prediction["reference_rows"] == 60 and prediction["current_rows"] == 600


@pytest.mark.timeout(300)
def test_the_report_names_the_aliases_after_a_promotion(
    packaged: Packaged, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    config, registry = promoted_copy(packaged, tmp_path / "iris", "2")  # register's last: v2
    text = report(config, registry, "pr").markdown
    assert (
        "Registered as **iris-classifier v2** (aliases `candidate`, `production`, forced)." in text
    )
