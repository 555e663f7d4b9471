"""train's journal against real processes (issue 40): `mlops-ci train` killed with SIGKILL or
SIGTERM while its training command runs leaves no process of the command, a record that names
the dead train, and an MLflow run ended KILLED; compare and register refuse the run of the
train before. Against a real `mlflow server` behind the fault proxy, a run creation that hangs
and a log-batch answered 503 end in exit 3 within the bound, and the next train ends every
run they left RUNNING."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from mlflow import MlflowClient

from tests.support.mlflow_server import Fault, fault_proxy, mlflow_server
from tests.support.store import copy_example

pytestmark = pytest.mark.slow

# A quick training command; with TRAIN_HOLD=TOKEN it starts a helper in the background and
# becomes a sleeper itself, both with TOKEN in their command line, and writes `held`.
TRAIN_PY = """\
import json, os, sys
from pathlib import Path
hold = os.environ.get("TRAIN_HOLD")
if hold:
    import subprocess
    subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)", hold])
    sleeper = "import pathlib, time; pathlib.Path('held').write_text('x'); time.sleep(120)"
    os.execv(sys.executable, [sys.executable, "-c", sleeper, hold])
import joblib
import pandas as pd
from sklearn.linear_model import LogisticRegression
train = pd.read_csv("data/train.csv")
X, y = train.drop(columns=["species"]), train["species"]
model = LogisticRegression(max_iter=1000).fit(X, y)
Path("outputs").mkdir(exist_ok=True)
joblib.dump(model, "outputs/model.joblib")
Path("outputs/metrics.json").write_text(json.dumps({"cv_accuracy": model.score(X, y)}))
"""


def make_project(folder: Path, isolation: str = "auto") -> Path:
    project = copy_example(folder / "iris")
    (project / "train.py").write_text(TRAIN_PY)
    config = project / "mlops.yaml"
    text = config.read_text().replace("train:\n", f"train:\n  isolation: {isolation}\n", 1)
    text = text.replace("  slices: [sepal_length]", "  importance: {enabled: false}")
    config.write_text(text)
    return project


def environment(**extra: str) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "GITHUB_"))}
    return {**clean, **extra}


def cli(project: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mlops_ci", *args, "-c", str(project)],
        capture_output=True,
        text=True,
        timeout=120,
        env=environment(**env),
    )


def shown(done: subprocess.CompletedProcess[str]) -> str:
    return f"exit {done.returncode}\n--- stdout\n{done.stdout}\n--- stderr\n{done.stderr}"


def alive_with(token: str) -> list[int]:
    """Processes (not zombies) whose command line holds ``token``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if token.encode() not in (entry / "cmdline").read_bytes():
                continue
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if state != "Z":
            found.append(int(entry.name))
    return found


@pytest.fixture
def holding(tmp_path: Path) -> Iterator[str]:
    """A token for the held command's processes; any left are killed after the test."""
    token = f"held-{uuid.uuid4().hex}"
    yield token
    for pid in alive_with(token):
        os.kill(pid, signal.SIGKILL)


def start_held_train(project: Path, token: str) -> subprocess.Popen[str]:
    """`mlops-ci train` whose command is holding (its processes up, `held` written)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "mlops_ci", "train", "-c", str(project)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=environment(TRAIN_HOLD=token),
    )
    deadline = time.monotonic() + 60
    while not (project / "held").exists() or len(alive_with(token)) < 2:
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "the training command never started"
        time.sleep(0.05)
    return process


def run_status(project: Path, run_id: str) -> str:
    client = MlflowClient(f"sqlite:///{project / '.mlops' / 'mlflow.db'}")
    return str(client.get_run(run_id).info.status)


def train_record(project: Path) -> dict[str, object]:
    found = json.loads((project / ".mlops" / "train.json").read_text())
    assert isinstance(found, dict)
    return found


@pytest.mark.timeout(120)
@pytest.mark.parametrize("isolation", ["off", "auto"])
def test_a_killed_train_leaves_no_process_and_a_record_compare_and_register_refuse(
    tmp_path: Path, holding: str, isolation: str
) -> None:
    """kill -9 of mlops-ci: its command (a process group under the supervisor without a
    sandbox, bwrap's PID namespace with one) is gone within 2 s. What the next verbs make
    of the record does not depend on the sandbox: checked once."""
    project = make_project(tmp_path, isolation)
    process = start_held_train(project, holding)
    record = train_record(project)
    assert record["status"] == "running" and record["pid"] == process.pid, record
    assert record["run_id"], "the MLflow run is in the record while the command runs"
    assert run_status(project, str(record["run_id"])) == "RUNNING"

    process.kill()
    process.communicate()
    deadline = time.monotonic() + 2
    while alive_with(holding) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert alive_with(holding) == [], "the training command outlived mlops-ci"
    if isolation != "off":
        return

    compared = cli(project, "compare")
    assert compared.returncode == 2, shown(compared)
    assert f"the last `mlops-ci train` was killed (pid {process.pid} on" in compared.stderr
    assert "Traceback" not in compared.stderr
    settled = train_record(project)
    assert settled["status"] == "killed" and "mlops-ci compare" in str(settled["settled_by"])
    assert settled["run_id"] == record["run_id"]
    assert run_status(project, str(record["run_id"])) == "KILLED"
    registered = cli(project, "register")
    assert registered.returncode == 2, shown(registered)
    assert f"was killed (pid {process.pid} on" in registered.stderr


@pytest.mark.timeout(120)
def test_sigterm_ends_the_command_group_records_the_kill_and_exits_143(
    tmp_path: Path, holding: str
) -> None:
    project = make_project(tmp_path)
    process = start_held_train(project, holding)
    run_id = str(train_record(project)["run_id"])
    started = time.monotonic()
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 143, err
    assert time.monotonic() - started < 15, "the kill was recorded within one bounded call"
    assert alive_with(holding) == [], "mlops-ci ended while its command still ran"
    assert "terminated by SIGTERM" in err and "Traceback" not in err
    record = train_record(project)
    assert (record["status"], record["error"]) == ("killed", "terminated by SIGTERM"), record
    assert run_status(project, run_id) == "KILLED"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with mlflow_server(tmp_path_factory.mktemp("journal-server")) as url:
        yield url


def error_lines(done: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in done.stderr.splitlines() if line.startswith("error:")]


@pytest.mark.timeout(240)
def test_a_registry_that_hangs_or_answers_503_is_exit_3_in_bound_and_the_next_train_ends_its_runs(
    tmp_path: Path, server: str
) -> None:
    """MLFLOW_HTTP_REQUEST_TIMEOUT=3: a metadata call ends within 3 + 5 s. runs/create hangs
    (each attempt reaches the server 12 s late, after the client gave up): exit 3, and the
    runs that land later carry the train's id; the next train ends them FAILED before it
    runs. That train's log-batch is answered 503: exit 3, its own run ended FAILED."""
    project = make_project(tmp_path)
    client = MlflowClient(server)
    with fault_proxy(server) as (proxy, state):
        env = {"MLFLOW_TRACKING_URI": proxy, "MLFLOW_HTTP_REQUEST_TIMEOUT": "3"}
        hang = Fault("POST", r"/runs/create$", "slow:12", times=100)
        state.faults.append(hang)
        started = time.monotonic()
        hung = cli(project, "train", **env)
        took = time.monotonic() - started
        assert hung.returncode == 3, shown(hung)
        assert len(error_lines(hung)) == 1 and "within 8 s" in hung.stderr, shown(hung)
        assert took < 30, f"train took {took:.1f} s against a bound of 8 s per call"
        first = train_record(project)
        assert first["status"] == "failed" and first["run_open"], first
        deadline = time.monotonic() + 40  # every late creation reaches the server
        while sum("/runs/create" in path for _, path, _ in state.seen) < 100 - hang.times:
            assert time.monotonic() < deadline, state.seen
            time.sleep(0.2)
        state.faults.clear()
        experiment = client.get_experiment_by_name("iris-classifier")
        assert experiment is not None
        ids = [experiment.experiment_id]
        late = client.search_runs(ids, f"tags.`mlops.train.id` = '{first['train_id']}'")
        assert late and {r.info.status for r in late} == {"RUNNING"}, "the lost creations"

        state.faults.append(Fault("POST", r"/runs/log-batch$", "503", times=1000))
        refused = cli(project, "train", **env)
        assert refused.returncode == 3, shown(refused)
        assert len(error_lines(refused)) == 1 and "log_batch" in refused.stderr, shown(refused)
        assert "settled: " in refused.stderr and "set FAILED" in refused.stderr, shown(refused)
        assert "Traceback" not in refused.stderr
    second = train_record(project)
    assert second["status"] == "failed" and not second["run_open"], second
    assert {r.info.status for r in client.search_runs(ids, "")} == {"FAILED"}
    assert client.get_run(str(second["run_id"])).info.status == "FAILED"
