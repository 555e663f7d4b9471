"""The training command runs in bubblewrap (issue 38): the pull request's code, walking /proc,
reading its descriptors and appending to the runner's command files, finds no secret of
mlops-ci's and changes nothing but its project. Without the sandbox (train.isolation: off) the
same command finds them, which is what these tests guard against."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import secrets
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from mlops_ci.config.types import load_config
from mlops_ci.errors import TrainingError
from mlops_ci.pipeline.usercommand import run_command
from mlops_ci.sandbox import probe
from tests.support.attacker import plant
from tests.support.store import copy_example

pytestmark = pytest.mark.timeout(300)
SECRET = f"ghs_{secrets.token_hex(12)}"
PASSWORD = f"pw-{secrets.token_hex(10)}"
needs_bwrap = pytest.mark.skipif(
    probe().mechanism is None, reason=f"no sandbox here: {probe().why} (.ci/run installs it)"
)


@needs_bwrap
def test_in_the_sandbox_the_command_writes_only_its_project_and_holds_no_descriptor(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = copy_example(tmp_path / "iris")
    (project / ".git").mkdir()
    plant(project, [SECRET])
    runner_env = tmp_path / "runner" / "set_env"
    runner_env.parent.mkdir()
    runner_env.write_text("")
    monkeypatch.setenv("GITHUB_ENV", str(runner_env))
    venv_site = project / ".venv" / "site-packages"  # a virtualenv in the project (uv, poetry)
    venv_site.mkdir(parents=True)
    monkeypatch.syspath_prepend(str(venv_site))
    listening = socket.socket(socket.AF_UNIX)
    listening.bind(str(tmp_path / "host.sock"))
    listening.listen(1)
    (project / "socket.txt").write_text(str(tmp_path / "host.sock"))
    with (tmp_path / "held.txt").open("w") as held:  # a descriptor mlops-ci holds open
        os.set_inheritable(held.fileno(), True)
        attack(project, tmp_path, "{python} attack.py")
    listening.close()
    found = json.loads((project / "findings.json").read_text())
    assert found["remounted"] is False and found["connected"] is False, found
    assert found["fds"] == [], found
    assert found["appended"] == [] and runner_env.read_text() == "", found
    assert found["wrote"] == {
        ".mlops/planted.json": False,
        ".git/hooks/post-checkout": False,
        ".venv/site-packages/zz-planted.pth": False,
        "planted.txt": True,
    }, found
    assert found["tmp"] == "ok"  # a private TMPDIR it may write


def attack(project: Path, tmp_path: Path, command: str) -> None:
    config = load_config(project / "mlops.yaml")
    required = dataclasses.replace(config.train, isolation="required")
    run_command(
        dataclasses.replace(config, train=required), command, {}, dict(os.environ),
        tmp_path / "attack.log",
    )  # fmt: skip


@needs_bwrap
def test_a_git_repository_the_command_makes_in_the_project_is_refused_and_removed(
    tmp_path: Path,
) -> None:
    # The project is a folder of a repository: a .git the command made there would be the
    # repository the next `git status` of mlops-ci reads, and runs the hooks of.
    repository = tmp_path / "repo"
    subprocess.run(["git", "init", "-q", str(repository)], check=True, timeout=30)
    project = copy_example(repository / "iris")
    (project / "plant.py").write_text(
        "import pathlib; pathlib.Path('.git/hooks').mkdir(parents=True); "
        "pathlib.Path('.git/HEAD').write_text('ref: refs/heads/main')"
    )
    with pytest.raises(TrainingError, match=r"made a git repository \(\.git\).*removed it"):
        attack(project, tmp_path, "{python} plant.py")
    assert not (project / ".git").exists()


def train(tmp_path: Path, isolation: str) -> tuple[str, dict[str, Any], Path]:
    """`mlops-ci train` of the iris example whose train.py attacks first, in a process of its
    own holding the secrets in its environment as a CI step does: its output, what the attack
    found, and the runner's GITHUB_ENV file."""
    project = copy_example(tmp_path / "iris")
    (project / ".git").mkdir()  # the checkout's repository: read-only in the sandbox
    plant(project, [SECRET, PASSWORD], then_train=True)
    runner_env = tmp_path / "set_env"
    runner_env.write_text("")
    config = project / "mlops.yaml"
    config.write_text(re.sub(r"^train:\n", f"train:\n  isolation: {isolation}\n",
                             config.read_text(), count=1, flags=re.M))  # fmt: skip
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "GITHUB_"))},
        "GITHUB_TOKEN": SECRET,
        "MLFLOW_TRACKING_PASSWORD": PASSWORD,
        "GITHUB_ENV": str(runner_env),
    }
    done = subprocess.run(
        [sys.executable, "-m", "mlops_ci", "train", "-c", str(project)],
        capture_output=True, text=True, timeout=240, env=env,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout, json.loads((project / "findings.json").read_text()), runner_env


@pytest.mark.slow
def test_without_the_sandbox_a_hostile_train_py_reads_the_parents_secrets(tmp_path: Path) -> None:
    # train.isolation: off is how every train ran before the sandbox: the attack works.
    out, found, runner_env = train(tmp_path, "off")
    assert "training command: not isolated: train.isolation is off" in out, out
    assert found["environ"], found  # mlops-ci's own /proc/PID/environ
    assert "GITHUB_ENV" in found["appended"] and "evil" in runner_env.read_text()


@needs_bwrap
@pytest.mark.slow
def test_mlops_ci_train_runs_a_hostile_train_py_isolated_and_says_so(tmp_path: Path) -> None:
    out, found, runner_env = train(tmp_path, "auto")
    assert "training command: isolated by bubblewrap" in out, out
    assert found["environ"] == [] and found["cmdline"] == [], found
    assert found["appended"] == [] and runner_env.read_text() == "", found
    record = json.loads((tmp_path / "iris" / ".mlops" / "train.json").read_text())
    assert record["isolation"].startswith("isolated by bubblewrap")
