"""A team's registry: a real `mlflow server` on loopback, several CI jobs at once, and faults."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from mlops_ci.config.types import Config, load_config
from mlops_ci.registry import TAG_COMPLETE, TAG_MODEL_SHA256, TAG_MODEL_URI
from mlops_ci.registry.mlflow import MlflowRegistry
from mlops_ci.steps.train import train
from tests.support.mlflow_server import Fault, fault_proxy, mlflow_server
from tests.support.serve_helpers import free_port
from tests.support.store import copy_example

pytestmark = pytest.mark.slow
MODEL = "iris-classifier"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with mlflow_server(tmp_path_factory.mktemp("mlflow-server")) as url:
        yield url


@pytest.fixture
def team_project(tmp_path: Path, server: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The example with its own model name, pointed at the shared server."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", server)
    project = copy_example(tmp_path / "iris")
    name = f"iris-{tmp_path.name[-12:].replace('_', '-')}"
    cfg = project / "mlops.yaml"
    cfg.write_text(cfg.read_text().replace("name: iris-classifier", f"name: {name}"))
    return project


def cli(
    project: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mlops_ci", *args, "-c", str(project)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **(env or {})},
    )


def registry(project: Path) -> tuple[MlflowRegistry, str]:
    config = load_config(project)
    return MlflowRegistry.for_config(config), config.model.name


def test_train_compare_register_promote_report_against_a_server(team_project: Path) -> None:
    trained = cli(team_project, "train")
    assert trained.returncode == 0, trained.stderr
    assert cli(team_project, "compare").returncode == 0
    registered = cli(team_project, "register")
    assert registered.returncode == 0 and "registered" in registered.stdout, registered.stderr
    assert cli(team_project, "promote", "--version", "1", "--reason", "first").returncode == 0
    again = cli(team_project, "train")
    assert "cache hit" in again.stdout, again.stdout + again.stderr
    report = cli(team_project, "report")
    assert report.returncode == 0 and (team_project / ".mlops" / "report.md").is_file()
    reg, name = registry(team_project)
    version = reg.get_version_by_alias(name, "production")
    assert version is not None and version.version == "1"
    assert version.tags[TAG_COMPLETE] == "true" and version.tags[TAG_MODEL_SHA256]
    assert version.tags["mlops.promoted.production.reason"] == "first"


def model_runs(config: Config, reg: MlflowRegistry, count: int, tmp: Path) -> list[str]:
    """One trained run and ``count - 1`` finished runs holding a copy of its model files (a
    ``runs:/`` model, as a model logged elsewhere is): the race is between registers, and
    register reads a run's model files, not how they were trained."""
    trained = reg.get_run(train(config, reg).run_id)
    folder = reg.download_model(trained.model_uri or "", tmp / "model")
    found = reg.client.get_experiment_by_name(config.registry.experiment)
    assert found is not None
    runs = [trained.run_id]
    for _ in range(count - 1):
        run_id = reg.client.create_run(found.experiment_id).info.run_id
        reg.client.log_artifacts(run_id, str(folder), "model")
        reg.client.set_tag(run_id, TAG_MODEL_URI, f"runs:/{run_id}/model")
        reg.client.set_tag(run_id, TAG_COMPLETE, "true")
        reg.client.set_terminated(run_id)
        runs.append(run_id)
    return runs


def test_eight_concurrent_registers_get_eight_complete_versions(team_project: Path) -> None:
    config = load_config(team_project)
    reg = MlflowRegistry.for_config(config)
    runs = model_runs(config, reg, 8, team_project.parent)
    with ThreadPoolExecutor(8) as pool:  # eight processes started at once
        done = list(pool.map(lambda r: cli(team_project, "register", "--run", r, "--force"), runs))
    assert [d.returncode for d in done] == [0] * 8, [d.stderr for d in done]
    versions = {r: reg.find_versions_by_run(config.model.name, r) for r in runs}
    assert all(len(v) == 1 for v in versions.values()), versions
    numbers = sorted(int(v[0].version) for v in versions.values())
    assert numbers == list(range(1, 9))
    for run_id, (version,) in versions.items():
        assert version.tags["mlops.run_id"] == run_id and version.tags[TAG_COMPLETE] == "true"
        assert len(version.tags[TAG_MODEL_SHA256]) == 64

    raced_versions = ["2", "3", "4", "5", "6", "7"]
    with ThreadPoolExecutor(6) as pool:  # six promotions racing
        raced = list(
            pool.map(
                lambda v: cli(
                    team_project, "promote", "--version", v, "--reason", f"race {v}", "--force"
                ),
                raced_versions,
            )
        )
    assert [d.returncode for d in raced] == [0] * 6, [d.stderr for d in raced]
    production = reg.get_version_by_alias(config.model.name, "production")
    assert production is not None and production.version in raced_versions
    for number in raced_versions:
        tags = reg.get_version(config.model.name, number).tags
        assert tags["mlops.promoted.production.reason"] == f"race {number}"
        # every promotion says what became of it: it holds the alias, or was replaced
        holds = number == production.version
        assert holds or tags.get("mlops.replaced.production.by_version"), (number, tags)


def test_a_half_registered_version_is_finished_by_the_next_call(team_project: Path) -> None:
    config = load_config(team_project)
    reg = MlflowRegistry.for_config(config)
    run = reg.get_run(train(config, reg).run_id)
    # What a register killed after creating the version and before tagging it leaves behind.
    reg.client.create_registered_model(config.model.name)
    source = run.model_uri or ""
    bare = reg.client.create_model_version(
        config.model.name,
        source=source,
        run_id=run.run_id,
        model_id=source.removeprefix("models:/"),
    )
    assert TAG_COMPLETE not in (bare.tags or {})
    again = cli(team_project, "register", "--run", run.run_id, "--force")
    assert again.returncode == 0, again.stderr
    assert f"already registered as {config.model.name} v{bare.version}" in again.stdout
    tags = reg.get_version(config.model.name, str(bare.version)).tags
    assert tags[TAG_COMPLETE] == "true" and tags["mlops.run_id"] == run.run_id
    assert len(reg.find_versions_by_run(config.model.name, run.run_id)) == 1


def test_a_server_that_is_down_gives_exit_3_naming_the_uri_without_credentials(
    team_project: Path,
) -> None:
    uri = f"http://ci-user:s3cret-pw@127.0.0.1:{free_port()}"
    started = time.monotonic()
    down = cli(
        team_project,
        "train",
        env={
            "MLFLOW_TRACKING_URI": uri,
            "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
            "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "0",
        },
    )
    assert down.returncode == 3
    assert time.monotonic() - started < 60, "retries are bounded"
    errors = [line for line in down.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "MLflow at http://***@127.0.0.1:" in errors[0], down.stderr
    assert "s3cret-pw" not in down.stdout + down.stderr


def test_5xx_are_retried_and_a_lost_answer_records_nothing_twice(
    team_project: Path, server: str
) -> None:
    assert cli(team_project, "train").returncode == 0
    assert cli(team_project, "compare").returncode == 0
    with fault_proxy(server) as (proxy, state):
        state.faults = [
            Fault("GET", r"/runs/get", "503", times=2),
            Fault("POST", r"/model-versions/create", "lose"),
        ]
        env = {"MLFLOW_TRACKING_URI": proxy, "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "0"}
        done = cli(team_project, "register", env=env)
    assert done.returncode == 0, done.stderr
    statuses = [s for m, p, s in state.seen if "/model-versions/create" in p]
    assert statuses[:2] == [503, 200], state.seen  # created upstream, answer lost, retried
    assert [s for m, p, s in state.seen if "/runs/get" in p][:2] == [503, 503]
    assert f"registered {load_config(team_project).model.name} v1" in done.stdout
    reg, name = registry(team_project)
    every = reg.client.search_model_versions(f"name = '{name}'")
    assert [v.version for v in every] == ["1"], "the retried create left one version"


def test_a_server_that_never_answers_is_given_up_near_the_timeout_with_exit_3(
    team_project: Path, server: str
) -> None:
    with fault_proxy(server) as (proxy, state):
        state.faults = [Fault("GET", r"/experiments/get-by-name", "slow:600", times=10)]
        started = time.monotonic()
        # the default retries (3) and backoff: every attempt would time out, then back off
        # (2 + 4 + 8 s): 4 x 2 + 14 = 22 s and more without the deadline
        slow = cli(team_project, "train", env={"MLFLOW_TRACKING_URI": proxy,
                                               "MLFLOW_HTTP_REQUEST_TIMEOUT": "2"})  # fmt: skip
        elapsed = time.monotonic() - started
    assert slow.returncode == 3, slow.stdout + slow.stderr
    errors = [line for line in slow.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, slow.stderr
    assert (
        f"MLflow at {proxy} gave no usable answer to get_experiment_by_name within 7 s" in errors[0]
    )
    assert "MLFLOW_HTTP_REQUEST_TIMEOUT=2 s" in errors[0]
    assert elapsed < 7 + 10, f"{elapsed:.1f} s"  # the deadline, and the CLI's start-up
