"""`mlops-ci train --model PATH`: a model trained elsewhere recorded as the candidate run, with
no command run and no train section needed; lineage says it was handed in, its sha256 and by
whom; the handed file is never touched; bad paths are one line and exit 2."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pytest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

CONFIG = """\
version: 1
model: {name: handed, flavor: sklearn, task: classification}
evaluate: {data: data/test.csv, target: y, metrics: [accuracy]}
registry: {tracking_uri: "sqlite:///.mlops/mlflow.db"}
"""


def cli(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The CLI as a colleague runs it: who hands in is git's user.name."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "MLFLOW_"))}
    gitconfig = root.parent / "gitconfig"
    gitconfig.write_text("[user]\n\tname = colleague\n")
    env.update(GIT_CONFIG_GLOBAL=str(gitconfig), GIT_CONFIG_NOSYSTEM="1")
    return subprocess.run(
        [sys.executable, "-m", "mlops_ci", *args], cwd=root, env=env,
        capture_output=True, text=True, timeout=240,
    )  # fmt: skip


@pytest.fixture
def project(tmp_path: Path) -> tuple[Path, Path]:
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"a": rng.normal(size=200), "b": rng.normal(size=200)})
    frame["y"] = np.where(frame["a"] - frame["b"] > 0, "up", "down")
    root = tmp_path / "project"
    (root / "data").mkdir(parents=True)
    frame.iloc[150:].to_csv(root / "data" / "test.csv", index=False)
    (root / "mlops.yaml").write_text(CONFIG)
    handed = tmp_path / "from-a-colleague" / "model.joblib"
    handed.parent.mkdir()
    joblib.dump(LogisticRegression().fit(frame[["a", "b"]].iloc[:150], frame["y"][:150]), handed)
    return root, handed


def test_a_handed_in_model_is_recorded_with_its_lineage_and_left_untouched(
    project: tuple[Path, Path],
) -> None:
    root, handed = project
    before = handed.read_bytes()
    done = cli(root, "train", "--model", str(handed))
    assert done.returncode == 0, done.stderr
    sha = hashlib.sha256(before).hexdigest()
    assert f"handed in model.joblib (sha256 {sha[:12]}) by colleague" in done.stdout
    assert "evaluation " in done.stdout  # scored on evaluate.data like a trained model
    run_id = done.stdout.split("run_id=")[1].split()[0]
    assert handed.read_bytes() == before

    from mlops_ci.config.types import load_config
    from mlops_ci.registry.mlflow import MlflowRegistry

    run = MlflowRegistry.for_config(load_config(root)).get_run(run_id)
    assert run.tags["mlops.model.handed_in"] == "true"
    assert run.tags["mlops.model.sha256"] == sha
    assert run.tags["mlops.model.handed_in_by"] == "colleague"
    assert run.tags["mlops.model.source"] == "model.joblib"
    assert run.model_uri

    again = cli(root, "train", "--model", str(handed))
    assert again.returncode == 0 and f"reusing run {run_id}" in again.stdout, again.stderr

    # the chain goes on as for a trained model; the version's audit trail says who handed it in
    for verb in (("compare",), ("register",)):
        done = cli(root, *verb)
        assert done.returncode == 0, done.stderr
    trail = cli(root, "lineage", "1", "--format", "json")
    assert trail.returncode == 0, trail.stderr
    assert '"handed in by": "colleague"' in trail.stdout and sha in trail.stdout


def test_bad_paths_and_a_missing_command_are_one_line_and_exit_2(
    project: tuple[Path, Path], tmp_path: Path
) -> None:
    root, _ = project
    missing = cli(root, "train", "--model", "nowhere.joblib")
    assert missing.returncode == 2
    assert "--model nowhere.joblib: no such file or folder" in missing.stderr
    (tmp_path / "folder").mkdir()
    folder = cli(root, "train", "--model", str(tmp_path / "folder"))
    assert folder.returncode == 2 and "no MLmodel file" in folder.stderr
    nothing = cli(root, "train")
    assert nothing.returncode == 2
    assert "train.command: nothing to run" in nothing.stderr
    assert "Traceback" not in missing.stderr + folder.stderr + nothing.stderr
    assert cli(root, "validate").returncode == 0  # no train section is valid for --model
