"""validate through the CLI: each problem on a line of its own and exit 2; the evaluation
columns checked when the file is there, and a missing file named; stage problems; a symlink
loop."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.configs import VALID, write
from tests.support.helpers import run_cli
from tests.support.stages import GOOD, project


def test_validate_cli_prints_each_problem_and_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write(tmp_path, VALID.replace("version: 1", "version: 2") + "extra: true\n")
    assert run_cli("validate", "-c", str(tmp_path)) == 2
    assert capsys.readouterr().err.splitlines() == [
        "error: mlops.yaml:1: version: 1 was expected",
        "error: mlops.yaml:8: extra: unknown key "
        "(known keys: version, model, train, pipeline, evaluate, gate, registry, package, serve, "
        "monitor, deploy, notify)",
    ]


def test_validate_checks_the_evaluation_columns_when_the_file_exists(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_cli("validate", "-c", str(project)) == 0
    config = project / "mlops.yaml"
    config.write_text(config.read_text().replace("target: species", "target: specie"))
    assert run_cli("validate", "-c", str(project)) == 2
    err = capsys.readouterr().err
    assert "mlops.yaml:14: evaluate.target: 'specie' is not a column of data/test.csv" in err
    assert "did you mean 'species'?" in err and "Traceback" not in err
    config.write_text(config.read_text().replace("slices: [sepal_length]", "slices: [region]"))
    assert run_cli("validate", "-c", str(project)) == 2
    assert "mlops.yaml:16: evaluate.slices: region not columns of data/test.csv" in (
        capsys.readouterr().err
    )
    config.write_text(config.read_text().replace("slices: [region]", "slices: [sepal_length]"))
    (project / "data" / "test.csv").unlink()
    config.write_text(config.read_text().replace("target: specie", "target: species"))
    assert run_cli("validate", "-c", str(project)) == 2  # no file, and no stage writes it
    assert capsys.readouterr().err.splitlines() == [
        f"error: mlops.yaml:13: evaluate.data: 'data/test.csv' does not exist in "
        f"{project.resolve()}, and no pipeline stage writes it"
    ]


def test_a_symlink_loop_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "loop.yaml").symlink_to(tmp_path / "loop.yaml")
    assert run_cli("validate", "-c", str(tmp_path / "loop.yaml")) == 2


def test_validate_exits_2_with_the_stage_problem(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    project(tmp_path, GOOD.replace("[raw.csv]", "[raw.cvs]"))
    assert run_cli("validate", "-c", str(tmp_path)) == 2
    assert capsys.readouterr().err.splitlines()[0] == (
        "error: mlops.yaml:16: pipeline.stages.1.deps.0: 'raw.cvs' is neither in the project "
        "nor an out of a stage"
    )
