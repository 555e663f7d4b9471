"""The main-branch and reusable workflows as a user's repository runs them, in act: a push to
main registers the model, the reusable workflow takes its inputs and its one secret."""

from __future__ import annotations

import json

import pytest

from tests.support.github_server import GithubState
from tests.workflows.act import REPOSITORY, UserRepo

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]
TOKEN = "ghs_act_main_SECRET"


def versions(user: UserRepo) -> dict[str, list[str]]:
    """Version number -> aliases in the team registry."""
    done = user.mlops("versions", "--format", "json")
    assert done.returncode == 0, done.stderr
    return {row["version"]: row["aliases"] for row in json.loads(done.stdout)}


def test_a_push_to_main_trains_compares_and_registers(repo: tuple[UserRepo, GithubState]) -> None:
    user, _ = repo
    sha = user.commit("merge a model")
    event = {"ref": "refs/heads/main", "after": sha, "repository": REPOSITORY}
    run = user.act("push", "mlops-main.yml", event, {"MLFLOW_TRACKING_URI": user.tracking_uri})
    assert run.returncode == 0 and run.jobs() == {"train-and-register": "success"}, run.log()
    assert run.outputs("compare")["verdict"] == "no-baseline"
    assert run.outputs("register")["model_version"] == "1"
    assert "Registered as **iris-classifier v1**" in run.summary
    assert versions(user) == {"1": ["candidate"]}


def test_the_reusable_workflow_takes_its_inputs_and_its_secret(
    repo: tuple[UserRepo, GithubState],
) -> None:
    """Called with register: true (act reads workflow_call inputs from the event, a boolean
    as the string "true") and the tracking URI as the one secret it declares."""
    user, _ = repo
    sha = user.commit("call the reusable workflow")
    event = {
        "inputs": {"config": "mlops.yaml", "register": "true", "python-version": "3.11"},
        "ref": "refs/heads/main",
        "after": sha,
        "repository": REPOSITORY,
    }
    run = user.act(
        "workflow_call",
        "mlops-reusable.yml",
        event,
        secrets={"MLFLOW_TRACKING_URI": user.tracking_uri},
    )
    assert run.returncode == 0 and run.jobs() == {"pipeline": "success"}, run.log()
    assert run.outputs("compare")["verdict"] == "no-baseline"
    assert run.all_outputs().get("model_version") == "1", run.log()  # register: true took effect
    assert versions(user) == {"1": ["candidate"]}
    assert (user.artifacts / "mlops-report" / ".mlops" / "report.md").is_file()
