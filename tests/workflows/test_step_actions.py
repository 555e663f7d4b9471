"""Each step action's declared outputs, as a workflow of a user's reads them: one workflow run
in act that chains train → compare → register → package → report, promotes, then has a
weaker model refused, and writes ``toJSON(steps)`` (what ``steps.ID.outputs.NAME`` resolves
to) where the test reads it. A renamed output, or one wired to the wrong inner output, fails."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from mlops_ci import __version__
from tests.support.github_server import GithubState
from tests.workflows.act import (
    ARTIFACTS_FOLDER,
    DUMP_STEPS,
    UserRepo,
    pull_request_event,
    team_repo,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]
TOKEN = "ghs_act_steps_SECRET"
A = f"mlops-ci/mlops-ci/actions/{{}}@v{__version__}"


def _uses(action: str, id_: str, **with_: str) -> dict:  # type: ignore[type-arg]
    step: dict = {"id": id_, "uses": A.format(action)}  # type: ignore[type-arg]
    if with_:
        step["with"] = with_
    return step


WORKFLOW = {
    "name": "step actions",
    "on": "pull_request",
    "permissions": {},
    "jobs": {
        "steps": {
            "runs-on": "ubuntu-latest",
            "permissions": {"contents": "read", "pull-requests": "write"},
            "env": {"MLFLOW_TRACKING_URI": "${{ vars.MLFLOW_TRACKING_URI }}"},
            "steps": [
                ARTIFACTS_FOLDER,
                {  # act copies the repository here, as checkout would
                    "uses": "actions/checkout@8e8c483db84b4bee98b60c0593521ed34d9990e8",
                    "with": {"persist-credentials": False},
                },
                _uses("setup", "setup"),
                _uses("train", "train"),
                _uses("compare", "compare"),
                _uses("register", "register"),
                _uses("package", "package", build="false"),
                _uses("report", "report"),
                {
                    "id": "promote",
                    "run": 'mlops-ci promote --version "$V" --reason "the first model"',
                    "env": {"V": "${{ steps.register.outputs.version }}"},
                },
                _uses("train", "weak", params="C=0.01\nmax_iter=500"),
                _uses("compare", "lenient", **{"fail-on-gate": "false"}),
                {**_uses("compare", "strict"), "continue-on-error": True},
                DUMP_STEPS,
            ],
        }
    },
}


@pytest.fixture
def repo(tmp_path: Path) -> Iterator[tuple[UserRepo, GithubState]]:
    with team_repo(tmp_path, TOKEN) as (user, state):
        workflow = user.root / ".github" / "workflows" / "steps.yml"
        workflow.write_text(yaml.safe_dump(WORKFLOW, sort_keys=False))
        yield user, state


def test_each_step_action_exposes_its_declared_outputs(repo: tuple[UserRepo, GithubState]) -> None:
    user, github = repo
    sha = user.commit("a workflow of the step actions")
    github.pulls[4] = sha
    variables = {"MLFLOW_TRACKING_URI": user.tracking_uri}
    run = user.act("pull_request", "steps.yml", pull_request_event(4, sha), variables)
    assert (user.artifacts / "steps.json").is_file(), run.log()
    steps = json.loads((user.artifacts / "steps.json").read_text())
    # act also lists a composite's inner outputs: only the declared ones are held here.
    out = {name: step["outputs"] for name, step in steps.items()}
    assert run.jobs() == {"steps": "success"}, run.log()  # strict's failure is allowed

    assert out["setup"]["version"] == __version__ and out["setup"]["installer"] == "uv"
    assert re.fullmatch(r"[0-9a-f]{32}", out["train"]["run-id"])
    assert out["train"]["cached"] == "false"
    assert out["compare"]["verdict"] == "no-baseline"
    assert out["compare"]["run-id"] == out["train"]["run-id"]
    assert (out["register"]["model-name"], out["register"]["version"]) == ("iris-classifier", "1")
    assert out["package"]["context-path"].endswith(".mlops/package/iris-classifier-1")
    assert out["package"]["image"] == "ghcr.io/acme/iris-classifier:1"
    assert out["package"]["image-status"] == "skipped"
    assert re.fullmatch(r"[0-9a-f]{64}", out["package"]["model-sha256"])
    assert out["report"]["report-path"].endswith(".mlops/report.md")
    (comment,) = github.comments.values()
    assert out["report"]["comment-url"].endswith(f"#issuecomment-{comment['id']}")
    assert "Registered as **iris-classifier v1**" in comment["body"]
    assert github.authorizations == {f"token {TOKEN}"}

    assert out["weak"]["run-id"] != out["train"]["run-id"]
    assert out["lenient"]["verdict"] == "fail" and steps["lenient"]["outcome"] == "success"
    assert steps["strict"]["outcome"] == "failure"
    assert "verdict fail" in " ".join(run.annotations("error"))
    assert TOKEN not in run.log()
