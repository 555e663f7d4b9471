"""validate names each path mlops.yaml reads that is not there, on one line with its key and
line (exit 2): evaluate.data unless a pipeline stage writes it, and every train.inputs entry."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlops_ci.config.paths import missing_paths
from mlops_ci.config.types import load_config
from mlops_ci.pipeline.run import load_pipeline
from tests.support.configs import VALID, write
from tests.support.helpers import run_cli
from tests.support.stages import GOOD, project

pytestmark = pytest.mark.timeout(60)


def test_a_missing_evaluate_data_is_one_line_with_its_key_and_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write(tmp_path, VALID)
    root = tmp_path.resolve()
    assert run_cli("validate", "-c", str(tmp_path)) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"error: mlops.yaml:6: evaluate.data: 'data/test.csv' does not exist in {root}, "
        "and no pipeline stage writes it"
    ]
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "test.csv").write_text("x,label\n1,0\n")
    assert run_cli("validate", "-c", str(tmp_path)) == 0


def test_evaluate_data_a_stage_writes_need_not_exist_yet(tmp_path: Path) -> None:
    project(tmp_path, GOOD)
    text = (tmp_path / "mlops.yaml").read_text()
    (tmp_path / "mlops.yaml").write_text(text.replace("data: data/test.csv", "data: feat/t.csv"))
    config = load_config(tmp_path)
    pipeline = load_pipeline(config)
    assert pipeline is not None and pipeline.producer("feat/t.csv") is not None
    assert missing_paths(config, lambda p: pipeline.producer(p) is not None) == []
    assert run_cli("validate", "-c", str(tmp_path)) == 0
    (tmp_path / "mlops.yaml").write_text(text)  # data/test.csv: no stage writes it
    assert run_cli("validate", "-c", str(tmp_path)) == 2


def test_missing_and_outside_inputs_each_get_a_line(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "test.csv").write_text("x,label\n1,0\n")
    (tmp_path / "train.py").write_text("")
    text = VALID.replace(
        "  command: python train.py\n",
        "  command: python train.py\n  inputs: [train.py, data/train.csv, ../shared.csv, data/]\n",
    )
    root = tmp_path.resolve()
    assert missing_paths(load_config(write(tmp_path, text))) == [
        f"mlops.yaml:5: train.inputs.1: 'data/train.csv' does not exist in {root} "
        "(train fingerprints its inputs before it runs)",
        f"mlops.yaml:5: train.inputs.2: '../shared.csv' is outside the project folder {root}",
    ]
