"""Pipeline stages from mlops.yaml: ordered by their files, the training stage found, each
problem on a line with its file, line and key."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlops_ci.config.types import load_config
from mlops_ci.errors import ConfigError
from mlops_ci.pipeline.run import load_pipeline
from tests.support.stages import GOOD, HEAD, problems, project


def test_a_dag_is_ordered_by_its_files_and_the_training_stage_found(tmp_path: Path) -> None:
    pipeline = load_pipeline(load_config(project(tmp_path, GOOD)))
    assert pipeline is not None
    assert [s.name for s in pipeline.stages] == ["prepare", "train"]
    assert pipeline.training == "train" and pipeline.stage("train").upstream == ("prepare",)
    assert pipeline.producer("feat/x.csv") == pipeline.stage("prepare")
    assert pipeline.producer("raw.csv") is None


def test_unknown_dep_cycle_two_writers_and_outside_each_get_a_line(tmp_path: Path) -> None:
    found = problems(
        project(
            tmp_path,
            """\
            - name: a
              command: python a.py
              deps: [b_out, missing.csv]
              outs: [a_out, ../elsewhere]
            - name: b
              command: python b.py
              deps: [a_out]
              outs: [b_out, a_out/inner, out/model.joblib]
            """,
        )
    )
    assert found == [
        "mlops.yaml:12: pipeline.stages.0.outs.1: '../elsewhere' is outside the project folder "
        f"{tmp_path.resolve()}",
        "mlops.yaml:15: pipeline.stages.1.deps.0: 'a_out' is both a dep and an out of the stage",
        "mlops.yaml:16: pipeline.stages.1.outs.1: 'a_out/inner' is also written by stage 'a' "
        "('a_out'): one path, one stage",
        "mlops.yaml:11: pipeline.stages.0.deps.1: 'missing.csv' is neither in the project nor "
        "an out of a stage",
    ]
    cycle = problems(
        project(
            tmp_path,
            """\
            - name: a
              command: python a.py
              deps: [b_out]
              outs: [a_out]
            - name: b
              command: python b.py
              deps: [a_out]
              outs: [b_out, out/model.joblib]
            """,
        )
    )
    assert len(cycle) == 1 and cycle[0].startswith("mlops.yaml:")
    assert "form a cycle" in cycle[0]
    assert "stages a → b → a" in cycle[0] or "stages b → a → b" in cycle[0]


def test_no_training_stage_an_unknown_param_and_train_command_beside_stages(
    tmp_path: Path,
) -> None:
    found = problems(
        project(
            tmp_path,
            """\
            - name: a
              command: python a.py
              deps: [raw.csv]
              params: [C, lr]
              outs: [model.pkl]
            """,
        )
    )
    assert found == [
        "mlops.yaml:12: pipeline.stages.0.params.1: param 'lr' is not in train.params (C) and "
        "there is no params.yaml in .",
    ]
    (tmp_path / "params.yaml").write_text("lr: 0.1\n")
    assert problems(tmp_path) == [
        "mlops.yaml:5: train.outputs.model: no stage of mlops.yaml writes 'out/model.joblib'; "
        "the training stage is the one whose outs include it"
    ]
    text = (tmp_path / "mlops.yaml").read_text()
    (tmp_path / "mlops.yaml").write_text(text.replace("train:\n", "train:\n  command: x\n"))
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path)
    assert caught.value.problems == [
        "mlops.yaml:4: train.command: the pipeline's training stage has the command; remove "
        "train.command (or the pipeline)"
    ]


def test_a_stage_name_that_is_a_path_is_refused_with_its_line(tmp_path: Path) -> None:
    # mlops.yaml's schema holds stage names to a pattern; a dvc.yaml's names are checked here,
    # since a name is a folder of the stage cache and of the MLflow artifacts.
    project(tmp_path, GOOD)
    (tmp_path / "dvc.yaml").write_text(
        "stages:\n"
        "  ../../escape:\n"
        "    cmd: python a.py\n"
        "    deps: [raw.csv]\n"
        "    outs: [out/model.joblib]\n"
    )
    (tmp_path / "mlops.yaml").write_text(HEAD + "pipeline: {dvc: dvc.yaml}\n")
    assert problems(tmp_path) == [
        "dvc.yaml:3: stages.../../escape: '../../escape': stage names are 1 to 64 letters, "
        "digits, _ . and - (not starting with . or -)"
    ]


def test_the_lock_file_cannot_be_an_out(tmp_path: Path) -> None:
    found = problems(project(tmp_path, GOOD.replace("outs: [feat]", "outs: [feat, mlops.lock]")))
    assert found == [
        "mlops.yaml:17: pipeline.stages.1.outs.1: 'mlops.lock' is the lock file `mlops-ci train` "
        "writes"
    ]
