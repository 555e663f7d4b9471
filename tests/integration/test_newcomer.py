"""The newcomer's path, as `mlops-ci init` starts it: validate names what is missing, then the
starter's own gate decides (a first model passes with no production yet, a worse retrain fails
on the rule init wrote), and git ignores what the jobs wrote."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from mlops_ci.bundled import bundled
from tests.support.helpers import run_cli

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

# What a newcomer edits in the starter for the iris example's code and data.
EDITS = {
    "command: python train.py": 'command: "{python} train.py"',  # this test's interpreter
    "inputs: [train.py]": "inputs: [train.py, data/train.csv]",
    "  # params: {}": "  params: {C: 1.0}",
    "target: label": "target: species",
}


def test_init_validate_then_the_starter_gate_refuses_a_worse_retrain(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    root = tmp_path / "newcomer"
    c = str(root)
    assert run_cli("init", "--dir", c) == 0
    capsys.readouterr()
    assert run_cli("validate", "-c", c) == 2
    err = capsys.readouterr().err
    assert "mlops.yaml:36: evaluate.data: 'data/test.csv' does not exist" in err, err

    example = bundled("examples/iris")
    shutil.copytree(example / "data", root / "data")
    shutil.copy(example / "train.py", root / "train.py")
    text = (root / "mlops.yaml").read_text()
    for old, new in EDITS.items():
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    (root / "mlops.yaml").write_text(text)
    assert run_cli("validate", "-c", c) == 0

    assert run_cli("train", "-c", c) == 0
    assert run_cli("compare", "-c", c) == 0  # no production yet: the rule waits for one
    first = json.loads((root / ".mlops" / "comparison.json").read_text())
    assert first["verdict"] == "no-baseline"
    assert run_cli("register", "-c", c) == 0
    promote = ("--version", "@candidate", "--by", "newcomer", "--reason", "first model")
    assert run_cli("promote", "-c", c, *promote) == 0

    assert run_cli("train", "-c", c, "--param", "C=0.01") == 0  # worse on both metrics
    assert run_cli("compare", "-c", c) == 1
    second = json.loads((root / ".mlops" / "comparison.json").read_text())
    assert second["verdict"] == "fail"
    checks = {check["name"]: check["status"] for check in second["checks"]}
    assert checks["accuracy not worse than production (tolerance 0)"] == "fail", checks

    git = shutil.which("git")
    if git is not None:  # what the jobs wrote stays out of the repository, the config in it
        subprocess.run([git, "init", "-q", c], check=True, timeout=30)
        written = [".mlops/mlflow.db", ".mlops/comparison.json", "outputs/model.joblib"]
        ignored = subprocess.run(
            [git, "-C", c, "check-ignore", *written, "mlops.yaml", "train.py"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert ignored.stdout.split() == written
