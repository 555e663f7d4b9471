"""The Train stage of templates/azure-pipelines/mlops-pipeline.yml, its step templates run as
the agent runs them (``azure_agent.py``) against the real CLI, an MLflow SQLite store and the
loopback Azure DevOps server: a pull-request build trains, compares, skips register and posts
the report as one thread; a build of main registers. The pipeline defines no
MLFLOW_TRACKING_URI variable, so the steps get ``$(MLFLOW_TRACKING_URI)`` as written."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.actions.azure_agent import TEMPLATES, AgentJob
from tests.support.azure_server import AzureState, azure_devops_server
from tests.support.store import copy_example

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]
TOKEN = "azdo-templates-access-token-SECRET"


@pytest.fixture
def server() -> Iterator[tuple[str, AzureState]]:
    with azure_devops_server() as served:
        yield served


def train_stage() -> list[tuple[str, dict[str, str]]]:
    """(template, parameters) of the Train stage's job, in the pipeline's order."""
    pipeline = yaml.safe_load((TEMPLATES / "mlops-pipeline.yml").read_text())
    (stage,) = [s for s in pipeline["stages"] if s["stage"] == "Train"]
    (job,) = stage["jobs"]
    return [(s["template"], s.get("parameters", {})) for s in job["steps"] if "template" in s]


def run_train_stage(project: Path, url: str, **variables: str) -> AgentJob:
    job = AgentJob(
        workdir=project,
        temp=project.parent / "agent-temp",
        variables={
            "System.AccessToken": TOKEN,
            "System.CollectionUri": url,
            "System.TeamProject": "ml project",
            "Build.Repository.Id": "repo-1",
            "Build.Repository.Provider": "TfsGit",
            "Build.BuildId": "77",
            "Build.RequestedFor": "Ada Lovelace",
            **variables,
        },
    )
    job.temp.mkdir(exist_ok=True)
    for template, parameters in train_stage():
        job.run_template(template, parameters)
    return job


def versions(project: Path) -> list[dict[str, Any]]:
    done = subprocess.run(
        [sys.executable, "-m", "mlops_ci", "versions", "--format", "json"],
        cwd=project,
        env={"PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    return json.loads(done.stdout) if done.returncode == 0 else []


def test_a_pull_request_build_trains_compares_and_posts_one_thread_without_registering(
    server: tuple[str, AzureState], tmp_path: Path
) -> None:
    url, state = server
    project = copy_example(tmp_path / "iris", "iris")
    pr = {
        "Build.Reason": "PullRequest",
        "Build.SourceBranch": "refs/pull/12/merge",
        "System.PullRequest.PullRequestId": "12",
    }
    job = run_train_stage(project, url, **pr)
    assert [(r.name, r.result) for r in job.runs] == [
        ("train", "Succeeded"),
        ("compare", "Succeeded"),
        ("register", "Skipped"),  # the pipeline's condition: never on a pull-request build
        ("report", "Succeeded"),
    ], [(r.name, r.result, r.stdout[-400:], r.stderr[-400:]) for r in job.runs]
    assert re.fullmatch(r"[0-9a-f]{32}", job.variables["train.runId"])
    assert job.variables["compare.verdict"] == "no-baseline"
    (thread,) = state.threads.values()
    assert "iris-classifier" in thread["comments"][0]["content"]
    assert state.auth == {f"Bearer {TOKEN}"}
    assert versions(project) == []
    assert all(TOKEN not in r.stdout + r.stderr for r in job.runs)

    again = run_train_stage(project, url, **pr)  # a rerun: the same thread, edited
    assert again.result("report").result == "Succeeded"
    assert len(state.threads) == 1


def test_a_build_of_main_registers_the_candidate(
    server: tuple[str, AzureState], tmp_path: Path
) -> None:
    url, state = server
    project = copy_example(tmp_path / "iris", "iris")
    job = run_train_stage(
        project, url, **{"Build.Reason": "IndividualCI", "Build.SourceBranch": "refs/heads/main"}
    )
    assert [r.result for r in job.runs] == ["Succeeded"] * 4, [
        (r.name, r.stdout[-400:], r.stderr[-400:]) for r in job.runs
    ]
    assert job.variables["register.modelVersion"] == "1"
    assert [(v["version"], v["aliases"]) for v in versions(project)] == [("1", ["candidate"])]
    assert not state.threads  # no pull request, no thread
