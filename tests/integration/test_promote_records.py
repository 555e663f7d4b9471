"""Promotion and registration records against a real `mlflow server`, with real `mlops-ci`
processes killed (kill -9) at seeded points of their registry calls, racing each other, and an
alias write that hangs or whose answer is lost behind the fault proxy: the records every
version carries agree with where the alias really went, and the next call finishes the job.

A kill point is a count of answers the fault proxy gave the process: killed once the k-th
answer is out, the process dies during its (k+1)-th call or just before it. The seeded run of
20 kills per verb is the fault suite's; this file keeps a few, in about a minute.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from mlops_ci.config.types import Config, load_config
from mlops_ci.records import read_registration
from mlops_ci.registry import TAG_COMPLETE, TAG_MODEL_SHA256, TAG_MODEL_URI, TAG_VERDICT
from mlops_ci.registry.mlflow import MlflowRegistry
from mlops_ci.steps.promote import promote
from mlops_ci.steps.register import register
from tests.support.mlflow_server import Fault, ProxyState, fault_proxy, mlflow_server
from tests.support.promotions import check_consistent, check_history
from tests.support.store import copy_example

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]
ALIAS = "production"
SEED = 40


@dataclass
class Team:
    project: Path
    server: str
    run_id: str

    def config(self) -> Config:
        return load_config(self.project)

    def registry(self) -> MlflowRegistry:
        return MlflowRegistry.for_config(self.config(), honour_env=False)

    def rename(self, name: str) -> str:
        """The project's model name (each test its own model on the shared server)."""
        cfg = self.project / "mlops.yaml"
        old = self.config().model.name
        cfg.write_text(cfg.read_text().replace(f"name: {old}", f"name: {name}"))
        return name

    def versions(self, count: int) -> list[str]:
        """``count`` versions of the trained run's model that passed compare."""
        reg, name = self.registry(), self.config().model.name
        reg.create_version(name, reg.get_run(self.run_id), {TAG_VERDICT: "pass"}, "first")
        source = reg.get_run(self.run_id).model_uri or ""
        out = ["1"]
        for _ in range(count - 1):  # more of the same model (the adapter keeps one per run)
            made = reg.client.create_model_version(
                name, source=source, run_id=self.run_id, tags={TAG_VERDICT: "pass"}
            )
            out.append(str(made.version))
        return out


@pytest.fixture(scope="module")
def team(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Team]:
    """A real server and a finished run holding a model folder (register reads its files for
    the digest; nothing here loads it, so no training is paid for); mlops.yaml names the
    server."""
    with mlflow_server(tmp_path_factory.mktemp("mlflow-server")) as url:
        project = copy_example(tmp_path_factory.mktemp("team") / "iris")
        cfg = project / "mlops.yaml"
        text = cfg.read_text()
        assert 'tracking_uri: "sqlite:///.mlops/mlflow.db"' in text, text
        cfg.write_text(text.replace('"sqlite:///.mlops/mlflow.db"', f'"{url}"'))
        client = MlflowRegistry.for_config(load_config(project), honour_env=False).client
        run_id = client.create_run("0").info.run_id
        model = project / "outputs" / "model"
        model.mkdir(parents=True)
        (model / "MLmodel").write_text("flavors: {}\n")
        (model / "weights.bin").write_bytes(bytes(range(256)))
        client.log_artifacts(run_id, str(model), "model")
        client.set_tag(run_id, TAG_MODEL_URI, f"runs:/{run_id}/model")
        client.set_tag(run_id, TAG_COMPLETE, "true")
        client.set_terminated(run_id)
        yield Team(project, url, run_id)


def start(team: Team, uri: str, *args: str, **env: str) -> subprocess.Popen[str]:
    """`mlops-ci ARGS` as a CI job runs it, against ``uri`` (the proxy or the server)."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    return subprocess.Popen(
        [sys.executable, "-m", "mlops_ci", *args, "-c", str(team.project)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        env={**clean, "MLFLOW_TRACKING_URI": uri, "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "0",
             **env},
    )  # fmt: skip


def kill_after(process: subprocess.Popen[str], state: ProxyState, answers: int) -> bool:
    """kill -9 the process (its whole group) once the proxy gave it ``answers`` answers; False
    when it ended first. Waits for a call in flight to reach the server, as it would."""
    deadline = time.monotonic() + 60
    while len(state.seen) < answers and process.poll() is None:
        assert time.monotonic() < deadline, "the process made no progress"
        time.sleep(0.002)
    if process.poll() is not None:
        return False
    os.killpg(process.pid, signal.SIGKILL)
    process.communicate(timeout=30)
    time.sleep(0.3)
    return True


def holder(team: Team) -> str | None:
    found = team.registry().get_version_by_alias(team.config().model.name, ALIAS)
    return found.version if found else None


def test_a_register_killed_anywhere_is_finished_by_the_next_one(team: Team) -> None:
    """Killed at a seeded answer of its registry calls (the version made or not, the alias set
    or not), register run again makes no second version and finishes: tags, digest, alias,
    register.json."""
    rng = random.Random(f"{SEED}-register")
    for cycle in range(2):
        name = team.rename(f"iris-reg-{cycle}")
        with fault_proxy(team.server) as (proxy, state):
            process = start(team, proxy, "register", "--run", team.run_id, "--force")
            killed = kill_after(process, state, rng.randint(2, 12))
        config, reg = team.config(), team.registry()
        again = register(config, reg, team.run_id, force=True)
        (version,) = reg.find_versions_by_run(name, team.run_id)
        assert again.version == version.version == "1", (killed, state.seen)
        assert version.tags[TAG_COMPLETE] == "true" and len(version.tags[TAG_MODEL_SHA256]) == 64
        candidate = reg.get_version_by_alias(name, "candidate")
        assert candidate is not None and candidate.version == "1"
        assert read_registration(team.project) == again


def test_a_promote_killed_anywhere_leaves_records_the_next_promote_makes_true(
    team: Team,
) -> None:
    """v1 promoted by a whole process (its answers counted); then, three times, a promote
    killed at a seeded answer and the next version promoted: every version's records follow
    the alias's real path, whether or not the killed one's alias write had happened."""
    name = team.rename("iris-promote-kills")
    numbers = team.versions(7)
    with fault_proxy(team.server) as (proxy, state):
        whole = start(team, proxy, "promote", "--version", "1", "--reason", "first")
        out, err = whole.communicate(timeout=60)
    assert whole.returncode == 0, err
    assert f"{name}: alias '{ALIAS}' nothing -> v1 (by " in out, out
    # One kill point before the alias write, one after it, one anywhere (seeded).
    alias_write = [path for _, path, _ in state.seen].index(
        "/api/2.0/mlflow/registered-models/alias"
    )
    rng = random.Random(f"{SEED}-promote")
    points = [rng.randint(1, alias_write - 2), rng.randint(alias_write + 1, len(state.seen) - 1)]
    points.append(rng.randint(1, len(state.seen) - 1))
    history, never = ["1"], set()
    for point, killed, nxt in zip(points, numbers[1::2], numbers[2::2], strict=True):
        with fault_proxy(team.server) as (proxy, state):
            process = start(team, proxy, "promote", "--version", killed, "--reason", "killed")
            kill_after(process, state, point)
        if holder(team) == killed:
            history.append(killed)
        else:
            never.add(killed)
        result = promote(team.config(), team.registry(), nxt, by="ci", reason="next")
        assert result.previous == history[-1]
        history.append(nxt)
        check_history(team.registry(), name, ALIAS, history, never)


def test_concurrent_promotes_leave_the_holder_unreplaced_and_the_loser_replaced(
    team: Team,
) -> None:
    name = team.rename("iris-promote-races")
    numbers = team.versions(5)
    promote(team.config(), team.registry(), "1", by="ci", reason="first")
    for a, b in zip(numbers[1::2], numbers[2::2], strict=True):
        both = [start(team, team.server, "promote", "--version", v, "--reason", f"race {v}")
                for v in (a, b)]  # fmt: skip
        for process in both:
            _, err = process.communicate(timeout=60)
            assert process.returncode == 0, err
        check_consistent(team.registry(), name, ALIAS)
        won = holder(team)
        lost = b if won == a else a
        tags = team.registry().get_version(name, lost).tags
        assert tags[f"mlops.replaced.{ALIAS}.by_version"] == won, tags


def test_a_hung_alias_write_exits_3_recording_nothing_and_is_recorded_once_it_lands(
    team: Team,
) -> None:
    name = team.rename("iris-promote-hung")
    team.versions(3)
    promote(team.config(), team.registry(), "1", by="ci", reason="first")
    quick = {"MLFLOW_HTTP_REQUEST_TIMEOUT": "1", "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0"}
    with fault_proxy(team.server) as (proxy, state):
        state.faults = [Fault("POST", r"/registered-models/alias", "slow:3")]
        hung = start(team, proxy, "promote", "--version", "2", "--reason", "hung", **quick)
        out, err = hung.communicate(timeout=60)
        assert hung.returncode == 3, out + err
        assert "not promoted, nothing recorded" in err and "Traceback" not in err, err
        check_history(team.registry(), name, ALIAS, ["1"], never={"2", "3"})
        deadline = time.monotonic() + 20
        while holder(team) != "2":  # the proxy forwards the write late: it lands
            assert time.monotonic() < deadline
            time.sleep(0.2)
    result = promote(team.config(), team.registry(), "3", by="ci", reason="next")
    assert result.previous == "2" and any("recorded now" in r for r in result.recorded)
    check_history(team.registry(), name, ALIAS, ["1", "2", "3"], never=set())
    tags = team.registry().get_version(name, "2").tags
    assert tags[f"mlops.promoted.{ALIAS}.reason"] == "hung"


def test_an_alias_write_whose_answer_is_lost_is_a_promotion_said_so(team: Team) -> None:
    name = team.rename("iris-promote-lost")
    team.versions(2)
    promote(team.config(), team.registry(), "1", by="ci", reason="first")
    with fault_proxy(team.server) as (proxy, state):
        state.faults = [Fault("POST", r"/registered-models/alias", "lose")]
        lost = start(team, proxy, "promote", "--version", "2", "--reason", "lost",
                     MLFLOW_HTTP_REQUEST_MAX_RETRIES="0")  # fmt: skip
        out, err = lost.communicate(timeout=60)
    assert lost.returncode == 0, out + err
    assert "answer was lost; read back" in out, out
    check_history(team.registry(), name, ALIAS, ["1", "2"], never=set())
