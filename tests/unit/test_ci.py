"""The CI port (mlops_ci/ci/__init__.py): error annotations on file and line (and without
credentials), step outputs and the job summary."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlops_ci.ci import (
    emit_outputs,
    error_annotations,
    mask_secret,
    warning_annotation,
    write_summary,
)
from mlops_ci.config.types import load_config
from mlops_ci.errors import ConfigError, GateFailed, ServiceError


def test_config_errors_become_annotations_on_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "ml").mkdir()
    (tmp_path / "ml" / "mlops.yaml").write_text("version: 1\nmodel: {}\n")
    with pytest.raises(ConfigError) as err:
        load_config(tmp_path / "ml")
    env = {"GITHUB_ACTIONS": "true", "GITHUB_WORKSPACE": str(tmp_path)}
    commands = error_annotations(err.value, env)
    assert (
        "::error file=ml/mlops.yaml,line=2,title=mlops-ci::model.name: required key is missing"
        in commands
    )
    assert error_annotations(err.value, {}) == []
    gate = error_annotations(GateFailed("verdict fail\nsecond line", hint="see report"), env)
    assert gate == [
        "::error title=mlops-ci: the gate said no::verdict fail%0Asecond line (hint: see report)"
    ]


def test_outputs_and_summary_files(tmp_path: Path) -> None:
    out, summary = tmp_path / "out", tmp_path / "summary"
    env = {"GITHUB_OUTPUT": str(out), "GITHUB_STEP_SUMMARY": str(summary)}
    emit_outputs({"run_id": "abc", "notes": "two\nlines"}, env)
    text = out.read_text().splitlines()
    assert text[0] == "run_id=abc"
    delimiter = text[1].split("<<")[1]
    assert text[1:] == [f"notes<<{delimiter}", "two", "lines", delimiter]
    assert write_summary("# hi", env) and summary.read_text() == "# hi\n"
    assert not write_summary("# hi", {})


def test_annotations_show_no_credential() -> None:
    """An error or a warning quoting the tracking URI or a token: the annotation (a line in
    the log and on the run's page) shows neither its password nor the token."""
    secrets = {"MLFLOW_TRACKING_PASSWORD": "pw-SECRET-42", "AZURE_DEVOPS_EXT_PAT": "patSECRET99"}
    err = ServiceError(
        "MLflow at http://alice:pw-SECRET-42@h:5000/api failed", hint="PAT patSECRET99 rejected"
    )
    github = {"GITHUB_ACTIONS": "true", **secrets}
    azure = {"TF_BUILD": "True", **secrets}
    shown = [
        *error_annotations(err, github),
        *error_annotations(err, azure),
        *warning_annotation("token patSECRET99 expires soon", github),
        *warning_annotation("see https://u:x-SECRET@h/", azure),
    ]
    assert len(shown) == 4 and not any("SECRET" in line for line in shown), shown
    assert shown[0] == (
        "::error title=mlops-ci::MLflow at http://***@h:5000/api failed (hint: PAT *** rejected)"
    )
    assert shown[3] == "##vso[task.logissue type=warning;]see https://***@h/"
    assert mask_secret("MLFLOW_TRACKING_PASSWORD", "pw-SECRET-42", github) == [
        "::add-mask::pw-SECRET-42"  # the one command that must name the secret
    ]
