"""The Azure Pipelines task under Microsoft's own task test runner: azure-pipelines-task-lib's
``MockTestRunner`` runs ``index.js`` (through a ``TaskMockRunner`` file that sets every input
task.json declares, with its defaults, as the agent does) against the real ``mlops-ci`` of
this environment, and the test reads back what the runner parsed: succeeded or failed, the
issues, the output variables.

The runner starts the task with the Node of the task's handler (``Node20_1``), which it would
download from nodejs.org into ``$HOME/azure-pipelines-task-lib/_download``; no such download
is possible here, so this machine's Node 20 is put where the runner looks (with the marker it
checks), and the test refuses to run under another major version.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.actions.azure_agent import output_variables
from tests.support.store import copy_example

ROOT = Path(__file__).resolve().parents[2]
TASK = ROOT / "actions" / "azure-pipelines" / "mlopsci"
MOCK = Path(__file__).parent / "azure_mock"

pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def node_modules(task_dir: Path) -> Path:
    """azure-pipelines-task-lib as the task ships it (npm ci of its package-lock.json)."""
    return task_dir / "mlopsci" / "node_modules"


@pytest.fixture(scope="module")
def home(node_modules: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A HOME where MockTestRunner finds the handler's Node already 'downloaded'."""
    source = (node_modules / "azure-pipelines-task-lib" / "mock-test.js").read_text()
    handler = json.loads((TASK / "task.json").read_text())["execution"]
    (major,) = {int(re.sub(r"\D", "", k.split("_")[0])) for k in handler}
    pinned = re.search(rf"\b{major}: '(v[\d.]+)'", source)
    assert pinned, f"mock-test.js names no Node {major} download"
    here = subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip()
    if not here.startswith(f"v{major}."):
        pytest.skip(f"the task's handler runs Node {major}; this machine has {here}")
    home = tmp_path_factory.mktemp("home")
    download = home / "azure-pipelines-task-lib" / "_download" / f"node{major}"
    bin_dir = download / f"node-{pinned.group(1)}-linux-x64" / "bin"
    bin_dir.mkdir(parents=True)
    (bin_dir / "node").symlink_to(shutil.which("node") or "node")
    Path(f"{download}.completed").write_text("")
    return home


def run_cases(
    cases: list[dict[str, Any]], cwd: Path, node_modules: Path, home: Path
) -> dict[str, dict[str, Any]]:
    """Each case through MockTestRunner, in one Node process: name -> what the runner saw."""
    (cwd / "cases.json").write_text(json.dumps(cases))
    env = {
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}/usr/bin:/bin",
        "HOME": str(home),
        "NODE_PATH": str(node_modules),
        "MLOPS_TASK_DIR": str(node_modules.parent),
        "TF_BUILD": "True",  # what the agent sets: mlops-ci speaks ##vso
        "MLOPS_CI_CACHE_DIR": str(cwd / ".cache"),
    }
    done = subprocess.run(
        ["node", str(MOCK / "l0.js"), str(cwd / "cases.json"), str(cwd / "seen.json")],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=540,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return {seen["name"]: seen for seen in json.loads((cwd / "seen.json").read_text())}


def test_every_command_of_the_task_reaches_its_verb_with_the_config(
    node_modules: Path, home: Path, tmp_path: Path
) -> None:
    """Each command of task.json's pick list, with the default config input and --help as its
    arguments: the verb starts and accepts the --config the task always passes."""
    verbs = [v for v in json.loads((TASK / "task.json").read_text())["inputs"][0]["options"]]
    verbs.remove("setup")
    project = copy_example(tmp_path / "iris", "iris")
    cases = [{"name": v, "inputs": {"command": v, "arguments": "--help"}} for v in verbs]
    seen = run_cases(cases, project, node_modules, home)
    for verb in verbs:
        assert seen[verb]["succeeded"], (verb, seen[verb]["stdout"], seen[verb]["stderr"])
        assert f"Usage: mlops-ci {verb} [OPTIONS]" in seen[verb]["stdout"], seen[verb]["stdout"]


def test_the_task_trains_validates_and_fails_as_the_agent_shows_it(
    node_modules: Path, home: Path, tmp_path: Path
) -> None:
    project = copy_example(tmp_path / "iris", "iris")
    broken = project / "broken"
    broken.mkdir()
    text = (project / "mlops.yaml").read_text()
    (broken / "mlops.yaml").write_text(text.replace("evaluate:", "evaluate:\n  shuffle: true", 1))
    cases = [
        {"name": "validate", "inputs": {"command": "validate"}},
        {"name": "train", "inputs": {"command": "train", "arguments": "--param\nC=0.5"}},
        {"name": "broken", "inputs": {"command": "validate", "config": "broken/mlops.yaml"}},
        {"name": "unknown", "inputs": {"command": "rm -rf /"}},
    ]
    seen = run_cases(cases, project, node_modules, home)

    assert seen["validate"]["succeeded"], seen["validate"]["stdout"]
    assert seen["train"]["succeeded"], seen["train"]["stdout"] + seen["train"]["stderr"]
    outputs = output_variables(seen["train"]["stdout"])
    assert re.fullmatch(r"[0-9a-f]{32}", outputs["runId"]), outputs
    from mlflow import MlflowClient

    store = f"sqlite:///{project / '.mlops' / 'mlflow.db'}"
    recorded = MlflowClient(store, registry_uri=store).get_run(outputs["runId"])
    assert recorded.data.params["C"] == "0.5"  # the arguments input, one argument a line

    broken_out = seen["broken"]["stdout"]
    assert not seen["broken"]["succeeded"], broken_out
    assert "mlops-ci validate exited with 2" in broken_out
    (issue,) = re.findall(r"##vso\[task\.logissue type=error;([^\]]*)\]([^\r\n]*)", broken_out)
    assert "sourcepath=" in issue[0] and "linenumber=" in issue[0], issue  # the line at fault
    assert "shuffle" in issue[1], issue
    assert seen["broken"]["errorIssues"] == []  # one issue (mlops-ci's), not a second one

    assert not seen["unknown"]["succeeded"]
    (refusal,) = seen["unknown"]["errorIssues"]  # as the runner parsed task-lib's issue
    assert refusal.startswith("input command: 'rm -rf /' is not an mlops-ci verb"), refusal
