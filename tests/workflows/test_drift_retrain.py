"""Drift to retraining as a user's repository runs it, in act: mlops-drift.yml checks a folder
of inputs against the reference data, fails on drift and sends the repository_dispatch
``mlops-ci.drift.detected`` (to the fake GitHub API); that very dispatch payload then starts
mlops-retrain.yml, whose training command sees the drifted data's location and whose model
goes through the gate against production before it is registered."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow.artifacts
import pytest

from tests.support.github_server import GithubState
from tests.workflows.act import REPOSITORY, UserRepo

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]
TOKEN = "ghs_act_drift_SECRET"
FEATURES = ("sepal_length", "sepal_width", "petal_length", "petal_width")


def test_drift_sends_the_dispatch_that_retrains_through_the_gate(
    repo: tuple[UserRepo, GithubState],
) -> None:
    user, state = repo
    config = user.root / "mlops.yaml"
    config.write_text(
        config.read_text()
        + "monitor: {drift: {min_rows: 10}}\n"
        + "notify: {repository_dispatch: {events: [drift.detected]}}\n"
    )
    train = user.root / "train.py"
    train.write_text(
        'import os\nprint("retraining on:", os.environ.get("MLOPS_RETRAIN_DATA"))\n'
        + train.read_text()
    )
    shifted = user.root / "incoming" / "inputs.csv"
    shifted.parent.mkdir()
    shifted.write_text(
        ",".join(FEATURES)
        + "\n"
        + "".join(f"{9 + i / 100},{5 + i / 100},{9 + i / 100},{4 + i / 100}\n" for i in range(50))
    )
    user.commit("drift checks and retraining")
    user.candidate()
    promoted = user.mlops("promote", "--version", "1", "--reason", "the first model")
    assert promoted.returncode == 0, promoted.stderr

    dispatch = {"inputs": {"input-log": "incoming/inputs.csv"}, "repository": REPOSITORY}
    checked = user.act("workflow_dispatch", "mlops-drift.yml", dispatch)
    assert checked.returncode != 0 and checked.jobs() == {"drift": "failure"}, checked.log()
    assert checked.outputs("drift")["drift-verdict"] == "drift"
    assert set(checked.outputs("drift")["drifted"].split(",")) == set(FEATURES)
    assert "Data drift: **drift**" in checked.summary
    assert any("data drift in" in e for e in checked.annotations("error"))
    ((where, sent),) = state.dispatches
    assert where == "acme/iris" and sent["event_type"] == "mlops-ci.drift.detected", sent
    event = sent["client_payload"]["event"]
    assert event["type"] == "io.mlops-ci.drift.detected", event
    current = event["data"]["current"]
    assert current.endswith("incoming/inputs.csv"), event

    # GitHub starts the retraining workflow with the dispatch as its event.
    retrain = {
        "action": sent["event_type"],
        "client_payload": sent["client_payload"],
        "repository": REPOSITORY,
    }
    variables = {"MLFLOW_TRACKING_URI": user.tracking_uri}
    run = user.act("repository_dispatch", "mlops-retrain.yml", retrain, variables)
    assert run.returncode == 0 and run.jobs() == {"retrain": "success"}, run.log()
    run_id = run.outputs("train")["run_id"]
    log = Path(
        mlflow.artifacts.download_artifacts(
            run_id=run_id, artifact_path="logs/train.log", tracking_uri=user.tracking_uri
        )
    )
    assert f"retraining on: {current}" in log.read_text()  # the training command's output
    assert run.outputs("compare")["verdict"] == "pass", run.outputs("compare")
    assert run.outputs("register")["model_version"] == "2"
    listed = json.loads(user.mlops("versions", "--format", "json").stdout)
    assert {row["version"]: row["aliases"] for row in listed} == {
        "1": ["production"],
        "2": ["candidate"],
    }
