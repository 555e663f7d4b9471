"""The pull-request workflows as a user's repository runs them, in act: the sticky comment
created then updated in place, a worse model refused by the gate, and a fork's report saved
by one workflow and posted by mlops-report-fork.yml on workflow_run."""

from __future__ import annotations

import json

import pytest

from tests.support.github_server import GithubState
from tests.workflows.act import UserRepo, pull_request_event

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]
TOKEN = "ghs_act_workflows_SECRET"


def registry(repo: UserRepo) -> dict[str, str]:
    """The repository variable naming the team's registry (this test's own)."""
    return {"MLFLOW_TRACKING_URI": repo.tracking_uri}


def test_a_pull_request_gets_one_comment_updated_in_place(
    repo: tuple[UserRepo, GithubState],
) -> None:
    user, github = repo
    sha = user.commit("a first model")
    github.pulls[7] = sha
    first = user.act("pull_request", "mlops-pr.yml", pull_request_event(7, sha), registry(user))
    assert first.returncode == 0 and first.jobs() == {"train-and-compare": "success"}, first.log()
    assert len(first.outputs("train")["run_id"]) == 32
    assert first.outputs("compare")["verdict"] == "no-baseline"
    assert "iris-classifier" in first.summary and "no production model" in first.summary
    (comment,) = github.comments.values()
    assert "candidate has no production model" in comment["body"]
    saved = user.artifacts / "mlops-report" / ".mlops"
    assert json.loads((saved / "comparison.json").read_text())["verdict"] == "no-baseline"
    assert (saved / "report.md").read_text().startswith("## 🆕 `iris-classifier`")

    # The author pushes again: the same comment is edited, no second one appears.
    config = user.root / "mlops.yaml"
    config.write_text(config.read_text().replace("C: 1.0", "C: 0.5"))
    sha = user.commit("a smaller C")
    github.pulls[7] = sha
    again = user.act("pull_request", "mlops-pr.yml", pull_request_event(7, sha), registry(user))
    assert again.returncode == 0, again.log()
    assert list(github.comments) == [comment["id"]]
    assert ("PATCH", f"/repos/acme/iris/issues/comments/{comment['id']}", 200) in github.requests
    assert again.outputs("train")["run_id"] != first.outputs("train")["run_id"]


def test_the_gate_fails_the_job_on_a_worse_model(repo: tuple[UserRepo, GithubState]) -> None:
    user, github = repo
    for verb in (
        ["train"],
        ["compare"],
        ["register"],
        ["promote", "--version", "1", "--reason", "main"],
    ):
        done = user.mlops(*verb)  # the model in production, trained on main
        assert done.returncode == 0, done.stdout + done.stderr
    config = user.root / "mlops.yaml"
    config.write_text(config.read_text().replace("C: 1.0", "C: 0.001"))
    sha = user.commit("a much stronger regularisation")
    github.pulls[8] = sha
    run = user.act("pull_request", "mlops-pr.yml", pull_request_event(8, sha), registry(user))
    assert run.returncode != 0 and run.jobs() == {"train-and-compare": "failure"}
    assert run.outputs("compare")["verdict"] == "fail"
    assert "the candidate failed the gate; see the report" in run.annotations("error")
    (comment,) = github.comments.values()  # reported before the job failed
    assert comment["body"].startswith("## ❌ `iris-classifier`: candidate failed the gate")


def test_a_fork_report_is_saved_then_posted_by_the_base_repository(
    repo: tuple[UserRepo, GithubState],
) -> None:
    user, github = repo
    sha = user.commit("from a fork")
    github.pulls[9] = sha
    github.read_only = True  # a fork's pull_request token
    saved = user.act("pull_request", "mlops-pr.yml", pull_request_event(9, sha, fork=True))
    assert saved.returncode == 0, saved.log()
    assert not github.comments
    meta = user.artifacts / "mlops-report" / ".mlops" / "pr-comment" / "meta.json"
    assert json.loads(meta.read_text())["pr"] == 9
    # mlops-report-fork.yml downloads exactly that folder as mlops-report/
    artifact = user.artifacts / "mlops-report"
    (artifact / "pr-comment").mkdir(exist_ok=True)
    for item in (artifact / ".mlops" / "pr-comment").iterdir():
        item.rename(artifact / "pr-comment" / item.name)
    github.read_only = False  # the base repository's workflow_run token
    event = {
        "action": "completed",
        "workflow_run": {
            "id": 4242,
            "event": "pull_request",
            "head_sha": sha,
            "head_branch": "feature",
            "head_repository": {"full_name": "someone/iris"},
            "conclusion": "success",
        },
        "repository": {"full_name": "acme/iris", "name": "iris", "owner": {"login": "acme"}},
    }
    posted = user.act("workflow_run", "mlops-report-fork.yml", event)
    assert posted.returncode == 0 and posted.jobs() == {"post-report": "success"}, posted.log()
    (comment,) = github.comments.values()
    assert comment["body"].startswith("## 🆕 `iris-classifier`")
