"""The main-branch, reusable and release workflows as a user's repository runs them, in act:
a push to main registers the model, the reusable workflow takes its inputs and its one secret,
a release packages and deploys the candidate (local target) in the production environment."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.github_server import GithubState
from tests.serve_helpers import free_port
from tests.workflows.act import UserRepo, team_repo

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]
TOKEN = "ghs_act_main_SECRET"
REPOSITORY = {"full_name": "acme/iris", "name": "iris", "owner": {"login": "acme"}}


@pytest.fixture
def repo(tmp_path: Path) -> Iterator[tuple[UserRepo, GithubState]]:
    with team_repo(tmp_path, TOKEN) as made:
        yield made


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


def test_a_release_packages_and_deploys_the_candidate(repo: tuple[UserRepo, GithubState]) -> None:
    """mlops-deploy.yml on release: package @candidate and deploy it to production (the local
    target here), through the approval gate of the GitHub environment."""
    user, _ = repo
    port = free_port()
    config = user.root / "mlops.yaml"
    config.write_text(
        config.read_text()
        + "package:\n  profile: {single_row_runs: 20, batch_sizes: [1, 64]}\n"
        + f"deploy:\n  production: {{target: local, port: {port}, approval: none, "
        + "rollout: {steps: [100], window_seconds: 0.5, probe_requests: 5, min_requests: 5}}\n"
    )
    sha = user.commit("deploy locally")
    push = {"ref": "refs/heads/main", "after": sha, "repository": REPOSITORY}
    variables = {"MLFLOW_TRACKING_URI": user.tracking_uri}
    assert user.act("push", "mlops-main.yml", push, variables).returncode == 0
    release = {"action": "published", "release": {"tag_name": "v1"}, "repository": REPOSITORY}
    run = user.act("release", "mlops-deploy.yml", release, variables)
    try:
        assert run.returncode == 0 and run.jobs() == {"deploy": "success"}, run.log()
        outputs = run.all_outputs()
        assert outputs["deploy-status"] == "serving", outputs
        assert outputs["url"] == f"http://127.0.0.1:{port}"
    finally:
        import subprocess
        import sys

        subprocess.run(
            [
                sys.executable,
                "-m",
                "mlops_ci",
                "undeploy",
                "--env",
                "production",
                "--reason",
                "done",
            ],
            cwd=user.root,
            env={"PATH": "/usr/bin:/bin", **variables},
            capture_output=True,
            timeout=120,
        )
