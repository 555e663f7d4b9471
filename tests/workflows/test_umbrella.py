"""The umbrella action (``uses: mlops-ci/mlops-ci@vX``, the repository's own action.yml) in a
user's workflow, in act: it installs mlops-ci and runs one verb, refuses a command that is
not a verb, and keeps every token from the training command (the pull request's code)."""

from __future__ import annotations

import json
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
TOKEN = "ghs_act_umbrella_SECRET"
UMBRELLA = f"mlops-ci/mlops-ci@v{__version__}"
# What a runner holds that the training command must never see (the token comes from -s).
RUNNER_SECRETS = {
    "ACTIONS_ID_TOKEN_REQUEST_TOKEN": "oidc-SECRET",
    "SYSTEM_ACCESSTOKEN": "azure-SECRET",
    "MLFLOW_TRACKING_TOKEN": "mlflow-SECRET",
}

WORKFLOW = {
    "name": "umbrella",
    "on": "pull_request",
    "permissions": {},
    "jobs": {
        "umbrella": {
            "runs-on": "ubuntu-latest",
            "permissions": {"contents": "read"},
            "env": {"MLFLOW_TRACKING_URI": "${{ vars.MLFLOW_TRACKING_URI }}"},
            "steps": [
                ARTIFACTS_FOLDER,
                {"uses": "actions/checkout@8e8c483db84b4bee98b60c0593521ed34d9990e8"},
                {"id": "validate", "uses": UMBRELLA, "with": {"command": "validate"}},
                {
                    "id": "bad",
                    "uses": UMBRELLA,
                    "with": {"command": "rm -rf /"},
                    "continue-on-error": True,
                },
                {
                    "id": "train",
                    "uses": UMBRELLA,
                    "with": {"command": "train", "args": "--param\nC=0.5"},
                    "env": {"GITHUB_TOKEN": "${{ github.token }}", **RUNNER_SECRETS},
                },
                DUMP_STEPS,
            ],
        }
    },
}


@pytest.fixture
def repo(tmp_path: Path) -> Iterator[tuple[UserRepo, GithubState]]:
    with team_repo(tmp_path, TOKEN) as (user, state):
        (user.root / ".github" / "workflows" / "umbrella.yml").write_text(
            yaml.safe_dump(WORKFLOW, sort_keys=False)
        )
        (user.root / "envdump.py").write_text(  # the training command, as a PR could write it
            "import json, os, runpy\n"  # the sandbox lets it write nothing outside its project
            "print('ENVDUMP=' + json.dumps(dict(os.environ)), flush=True)\n"
            "runpy.run_path('train.py', run_name='__main__')\n"
        )
        config = user.root / "mlops.yaml"
        config.write_text(config.read_text().replace("{python} train.py", "{python} envdump.py"))
        yield user, state


def test_the_umbrella_runs_a_verb_refuses_others_and_keeps_tokens_from_training(
    repo: tuple[UserRepo, GithubState],
) -> None:
    user, _ = repo
    sha = user.commit("the umbrella action")
    variables = {"MLFLOW_TRACKING_URI": user.tracking_uri}
    run = user.act("pull_request", "umbrella.yml", pull_request_event(5, sha), variables)
    assert run.jobs() == {"umbrella": "success"}, run.log()  # bad's failure is allowed
    steps = json.loads((user.artifacts / "steps.json").read_text())

    assert steps["validate"]["outcome"] == "success"
    assert "valid (model iris-classifier)" in run.log()
    assert steps["bad"]["outcome"] == "failure"
    assert any("input command: 'rm -rf /' is not one of" in e for e in run.annotations("error"))

    assert steps["train"]["outcome"] == "success"
    run_id = steps["train"]["outputs"]["run-id"]
    assert len(run_id) == 32, steps["train"]
    # what the command printed is its log, an artifact of the run (act deletes its workspace)
    (log,) = (user.work / "team-artifacts").rglob("train.log")
    (dumped,) = [line for line in log.read_text().splitlines() if line.startswith("ENVDUMP=")]
    seen = json.loads(dumped.removeprefix("ENVDUMP="))
    assert json.loads(seen["MLOPS_PARAMS"])["C"] == 0.5  # args reached the verb, one a line
    leaked = {k for k, v in seen.items() if TOKEN in v or v in RUNNER_SECRETS.values()}
    assert not leaked, leaked
    assert not {"GITHUB_TOKEN", "INPUT_GITHUB-TOKEN", *RUNNER_SECRETS} & set(seen)
