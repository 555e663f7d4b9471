"""mlops-deploy.yml as a user's repository runs it on a release, in act: the job runs in the
GitHub environment "production", whose required reviewers are the approval gate. Without an
approval in the run's review history the job fails with one ::error saying what is missing;
with one, the candidate is packaged and deployed (the local target) and the approver is
recorded on the model version."""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path

import pytest
from mlflow import MlflowClient

from tests.support.github_server import GithubState
from tests.support.serve_helpers import free_port
from tests.support.store import with_package
from tests.workflows.act import REPOSITORY, UserRepo

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]
TOKEN = "ghs_act_deploy_SECRET"


def test_a_release_deploys_the_candidate_once_the_environment_is_approved(
    repo: tuple[UserRepo, GithubState],
) -> None:
    user, state = repo
    port = free_port()
    config = user.root / "mlops.yaml"
    config.write_text(
        with_package(config.read_text(), "  profile: {single_row_runs: 20, batch_sizes: [1, 64]}\n")
        + f"deploy:\n  production: {{target: local, port: {port}, approval: required, "
        + "rollout: {steps: [100], window_seconds: 0.5, probe_requests: 5, min_requests: 5}}\n"
    )
    user.commit("deploy to production, approved by a reviewer")
    user.candidate()  # what a push to main left (its act run is tested on its own)
    variables = {"MLFLOW_TRACKING_URI": user.tracking_uri}
    release = {"action": "published", "release": {"tag_name": "v1"}, "repository": REPOSITORY}

    refused = user.act(
        "release", "mlops-deploy.yml", release, variables, env={"GITHUB_RUN_ID": "7001"}
    )
    assert refused.returncode != 0 and refused.jobs() == {"deploy": "failure"}, refused.log()
    errors = refused.annotations("error")
    assert any("'production' needs an approval" in e for e in errors), errors
    assert ("GET", "/repos/acme/iris/actions/runs/7001/approvals", 200) in state.requests

    state.run_approvals[7002] = [
        {
            "state": "approved",
            "environments": [{"name": "production"}],
            "user": {"login": "rita"},
            "comment": "release notes read",
            "created_at": "2026-12-03T10:00:00Z",
        }
    ]
    run = user.act("release", "mlops-deploy.yml", release, variables, env={"GITHUB_RUN_ID": "7002"})
    try:
        assert run.returncode == 0 and run.jobs() == {"deploy": "success"}, run.log()
        outputs = run.all_outputs()
        assert outputs["deploy-status"] == "serving", outputs
        assert outputs["url"] == f"http://127.0.0.1:{port}"
        assert "gate approval: passed" in run.log()
        # registry_uri too: without it MLflow takes the process-wide one another test set
        team = MlflowClient(user.tracking_uri, registry_uri=user.tracking_uri)
        tags = team.get_model_version("iris-classifier", "1").tags
        assert tags["mlops.approval.production.by"] == "rita"
        assert tags["mlops.approval.production.source"] == "github environment"
        assert tags["mlops.approval.production.reason"] == "release notes read"
    finally:
        user.mlops("undeploy", "--env", "production", "--reason", "the test is over")
        # The serving process was started from the act run's workspace, which act deletes when
        # the run ends (with the state that names it): stop it by its command line, or it
        # outlives the test.
        stop_processes_under(user.work)


def stop_processes_under(folder: Path) -> None:
    """SIGTERM every process whose command line names a path under ``folder`` (Linux /proc)."""
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            words = cmdline.read_bytes().split(b"\0")
        except OSError:
            continue
        if any(str(folder).encode() in word for word in words):
            with contextlib.suppress(OSError, ValueError):
                os.kill(int(cmdline.parent.name), signal.SIGTERM)
