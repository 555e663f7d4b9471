"""init: a valid starter, never over an existing file; --from-dvc writes the same stages."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlops_ci.config.types import load_config
from mlops_ci.pipeline.run import load_pipeline
from tests.support.helpers import run_cli
from tests.support.stages import HEAD, dvc_project


def test_init_writes_a_valid_starter(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli("init", "--dir", str(tmp_path)) == 0
    config = load_config(tmp_path)
    assert config.model.name == "my-model"
    assert run_cli("validate", "-c", str(tmp_path)) == 0
    assert run_cli("init", "--dir", str(tmp_path)) == 2
    assert "already exists" in capsys.readouterr().err


def test_init_from_dvc_writes_the_equivalent_stages(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dvc_project(tmp_path)
    assert run_cli("init", "--dir", str(tmp_path), "--from-dvc") == 0
    config = load_config(tmp_path)
    assert config.train.model_output == "model.pkl" and config.pipeline.dvc is None
    written = load_pipeline(config)
    (tmp_path / "in-place").mkdir()
    dvc_project(tmp_path / "in-place")
    (tmp_path / "in-place" / "mlops.yaml").write_text(
        HEAD.replace("out/model.joblib", "model.pkl") + "pipeline: {dvc: dvc.yaml}\n"
    )
    in_place = load_pipeline(load_config(tmp_path / "in-place"))
    assert written is not None and in_place is not None
    assert written.stages == in_place.stages  # the same stages, whichever way they are given
    assert run_cli("validate", "-c", str(tmp_path)) == 0
