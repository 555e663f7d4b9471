"""train → compare → register → promote against a real MLflow store (SQLite, the default)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from mlops_ci.config.types import load_config
from mlops_ci.registry.mlflow import MlflowRegistry
from mlops_ci.steps.train import train
from tests.support.helpers import run_cli

pytestmark = pytest.mark.slow


def registry_for(project: Path) -> MlflowRegistry:
    return MlflowRegistry.for_config(load_config(project))


def test_cache_hit_then_one_changed_byte_retrains(project: Path) -> None:
    config = load_config(project)
    reg = MlflowRegistry.for_config(config)
    first = train(config, reg)
    assert not first.cached and first.metrics["cv_accuracy"] > 0.9
    again = train(config, reg)
    assert again.cached and again.run_id == first.run_id

    data = project / "data" / "train.csv"
    text = data.read_text()
    data.write_text(text.replace("5.0,", "5.1,", 1))  # one byte
    changed = train(config, reg)
    assert not changed.cached and changed.run_id != first.run_id
    assert changed.data_fingerprint != first.data_fingerprint

    other_params = train(config, reg, overrides={"C": 0.5})
    assert not other_params.cached and other_params.params["C"] == "0.5"


def test_lineage_reaches_the_run_and_the_model_version(project: Path, tmp_path: Path) -> None:
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@e", "-C", str(project)]
    subprocess.run([*git, "init", "-q", "-b", "feature"], check=True)
    subprocess.run(
        [*git, "remote", "add", "origin", "https://user:secret@example.com/acme/iris.git"],
        check=True,
    )
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-qm", "init"], check=True)
    head = subprocess.run(
        [*git, "rev-parse", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    event = tmp_path / "event.json"
    event.write_text(json.dumps({"pull_request": {"number": 42}}))
    env = {
        **os.environ,
        "GITHUB_ACTIONS": "true",
        "GITHUB_ACTOR": "octocat",
        "GITHUB_EVENT_PATH": str(event),
    }
    for key in ("GITHUB_SHA", "GITHUB_REF_NAME", "GITHUB_HEAD_REF", "GITHUB_REPOSITORY"):
        env.pop(key, None)

    config = load_config(project)
    reg = MlflowRegistry.for_config(config)
    result = train(config, reg, env=env)
    assert run_cli("compare", "-c", str(project)) == 0
    assert run_cli("register", "-c", str(project)) == 0

    version = reg.get_version_by_alias(config.model.name, "candidate")
    assert version is not None and version.run_id == result.run_id
    for tags in (reg.get_run(result.run_id).tags, version.tags):
        assert tags["mlops.git.commit"] == head
        assert tags["mlops.git.branch"] == "feature"
        assert tags["mlops.git.dirty"] == "false"
        assert tags["mlops.git.repository"] == "https://example.com/acme/iris.git"
        assert tags["mlops.ci.pr"] == "42" and tags["mlops.ci.actor"] == "octocat"
        assert len(tags["mlops.data.fingerprint"]) == 64 and len(tags["mlops.env.sha256"]) == 64
    assert version.tags["mlops.compare.verdict"] == "no-baseline"
    artifacts = {a.path for a in reg.client.list_artifacts(result.run_id, "lineage")}
    assert artifacts == {"lineage/inputs.manifest.json", "lineage/environment"}
    lock = reg.client.download_artifacts(
        result.run_id, "lineage/environment/requirements.lock", str(tmp_path)
    )
    assert "mlflow-skinny==" in Path(lock).read_text()


def test_gate_refuses_a_worse_model_through_the_cli(
    project: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    outputs = tmp_path / "github_output"
    monkeypatch.setenv("GITHUB_OUTPUT", str(outputs))
    c = str(project)
    assert run_cli("train", "-c", c) == 0
    assert "run_id=" in outputs.read_text()
    assert run_cli("compare", "-c", c) == 0
    assert run_cli("register", "-c", c) == 0
    assert (
        run_cli("promote", "-c", c, "--version", "@candidate", "--by", "ci", "--reason", "first")
        == 0
    )

    assert run_cli("train", "-c", c, "--param", "C=0.01") == 0
    capsys.readouterr()
    assert run_cli("compare", "-c", c) == 1
    out = capsys.readouterr()
    assert "verdict **fail**" in out.out and "production (v1)" in out.out
    assert "error: verdict fail for run" in out.err
    comparison = json.loads((project / ".mlops" / "comparison.json").read_text())
    assert comparison["production"]["version"] == "1"
    assert comparison["evaluation"]["rows"] == 60
    assert run_cli("register", "-c", c) == 1
    assert "not registering" in capsys.readouterr().err
    reg = registry_for(project)
    assert [
        str(v.version) for v in reg.client.search_model_versions("name = 'iris-classifier'")
    ] == ["1"]
    assert "verdict=fail" in outputs.read_text()


def test_failing_training_command_records_nothing_complete(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (project / "train.py").write_text("raise SystemExit('out of data')\n")
    assert run_cli("train", "-c", str(project)) == 2
    err = capsys.readouterr().err
    assert "train.command '{python} train.py' exited with code 1: out of data" in err
    reg = registry_for(project)
    experiment = reg.client.get_experiment_by_name("iris-classifier")
    assert experiment is not None  # the train's run, made before its command ran, ended FAILED
    runs = reg.client.search_runs([experiment.experiment_id])
    assert [r.info.status for r in runs] == ["FAILED"]
    assert "mlops.complete" not in runs[0].data.tags


def test_compare_and_register_refuse_the_run_before_a_failed_train(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_cli("train", "-c", str(project)) == 0
    (project / "train.py").write_text("raise SystemExit('out of data')\n")
    assert run_cli("train", "-c", str(project)) == 2
    capsys.readouterr()
    assert run_cli("compare", "-c", str(project)) == 2
    err = capsys.readouterr().err
    assert "the last `mlops-ci train` failed (mlops.yaml: train.command" in err
    assert "Traceback" not in err and "verdict" not in err
    assert run_cli("register", "-c", str(project), "--force") == 2
    assert not registry_for(project).client.search_model_versions("name = 'iris-classifier'")


def test_python_placeholder_is_mlops_cis_own_interpreter_whatever_is_on_path(
    project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A pipx-style install: the `python` on PATH is another one, without scikit-learn."""
    bin_dir = tmp_path / "other-python"
    bin_dir.mkdir()
    other = bin_dir / "python"
    other.write_text("#!/bin/sh\necho 'No module named sklearn' >&2\nexit 1\n")
    other.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    assert '"{python} train.py"' in (project / "mlops.yaml").read_text()
    assert run_cli("train", "-c", str(project)) == 0
    config = project / "mlops.yaml"
    config.write_text(config.read_text().replace('"{python} train.py"', "python train.py"))
    assert run_cli("train", "-c", str(project), "--no-cache") == 2


def test_training_without_metrics_is_named(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (project / "train.py").write_text("print('forgot everything')\n")
    assert run_cli("train", "-c", str(project)) == 2
    assert (
        "train.outputs.metrics: 'outputs/metrics.json': the training command wrote no metrics"
        in (capsys.readouterr().err)
    )


def _model_only_train(project: Path, metrics: str | None) -> None:
    """train.py fits the model and writes ``metrics`` (None: no metrics file at all)."""
    write = f"Path('outputs/metrics.json').write_text({metrics!r})\n" if metrics is not None else ""
    (project / "train.py").write_text(
        "import joblib, pandas as pd\n"
        "from pathlib import Path\n"
        "from sklearn.linear_model import LogisticRegression\n"
        "d = pd.read_csv('data/train.csv')\n"
        "m = LogisticRegression(max_iter=1000).fit(d.drop(columns=['species']), d['species'])\n"
        "Path('outputs').mkdir(exist_ok=True)\n"
        "joblib.dump(m, 'outputs/model.joblib')\n" + write
    )
    config = project / "mlops.yaml"
    text = config.read_text().replace("    - {metric: cv_accuracy, min: 0.85}\n", "")
    config.write_text(text)


def test_empty_metrics_object_is_accepted(project: Path) -> None:
    """The command may report no metric of its own: mlops-ci computes evaluate.metrics."""
    _model_only_train(project, "{}")
    assert run_cli("train", "-c", str(project)) == 0
    assert run_cli("compare", "-c", str(project)) == 0


def test_missing_metrics_file_accepted_only_when_the_key_is_not_set(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _model_only_train(project, None)
    assert run_cli("train", "-c", str(project)) == 2  # outputs.metrics is set in the example
    assert "wrote no metrics file" in capsys.readouterr().err
    config = project / "mlops.yaml"
    config.write_text(
        config.read_text().replace(
            "outputs: {model: outputs/model.joblib, metrics: outputs/metrics.json}",
            "outputs: {model: outputs/model.joblib}",
        )
    )
    assert run_cli("train", "-c", str(project)) == 0
    assert run_cli("compare", "-c", str(project)) == 0
    text = config.read_text().replace("  params:", "  metrics: [cv_accuracy]\n  params:")
    config.write_text(text)
    assert run_cli("train", "-c", str(project), "--no-cache") == 2  # declared: the file is due
    assert "wrote no metrics file" in capsys.readouterr().err


def test_unloadable_model_file_is_named_and_records_nothing_complete(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (project / "train.py").write_text(
        "from pathlib import Path\n"
        "Path('outputs').mkdir(exist_ok=True)\n"
        "Path('outputs/model.joblib').write_text('not a pickle')\n"
        "Path('outputs/metrics.json').write_text('{\"cv_accuracy\": 0.9}')\n"
    )
    assert run_cli("train", "-c", str(project)) == 2
    assert "train.outputs.model: 'model.joblib' cannot be loaded" in capsys.readouterr().err
    reg = registry_for(project)
    experiment = reg.client.get_experiment_by_name("iris-classifier")
    assert experiment is not None  # the train's run, made before its command ran, ended FAILED
    runs = reg.client.search_runs([experiment.experiment_id])
    assert [r.info.status for r in runs] == ["FAILED"]
    assert "mlops.complete" not in runs[0].data.tags


def test_unreachable_server_is_exit_3_without_credentials(
    project: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as sock:  # a loopback port that nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://bob:s3cret@127.0.0.1:{port}")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    assert run_cli("compare", "-c", str(project), "--run", "abc") == 3
    err = capsys.readouterr().err
    assert f"error: MLflow at http://***@127.0.0.1:{port} failed: cannot connect" in err
    assert "s3cret" not in err


def test_unknown_alias_and_unknown_run_are_bad_input(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    c = str(project)
    assert run_cli("promote", "-c", c, "--version", "@nope", "--reason", "x") == 2
    assert "there is no model 'iris-classifier' in sqlite:" in capsys.readouterr().err
    assert run_cli("train", "-c", c) == run_cli("compare", "-c", c) == 0
    assert run_cli("register", "-c", c) == 0
    capsys.readouterr()
    assert run_cli("promote", "-c", c, "--version", "@nope", "--reason", "x") == 2
    assert "model 'iris-classifier' has no alias 'nope'" in capsys.readouterr().err
    assert run_cli("compare", "-c", c, "--run", "0" * 32) == 2
    assert f"run '{'0' * 32}' not found" in capsys.readouterr().err


def test_demo_command_end_to_end(tmp_path: Path) -> None:
    # A team server in the environment must not receive the demo's runs.
    env = {**os.environ, "MLFLOW_TRACKING_URI": "http://127.0.0.1:9"}
    done = subprocess.run(
        [sys.executable, "-m", "mlops_ci", "demo", "--dir", str(tmp_path / "demo")],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "promoted: alias 'production' -> v1" in out
    assert "verdict **no-baseline**" in out and "verdict **fail**" in out
    # both re-scored on test.csv; one sign per gap, with its direction in words
    assert "| f1_macro | 0.8239 | 0.9500 | -0.1261 (worse by 0.1261) 🔴 |" in out
    assert "\ncomparison: " in out and "comparison.md" in out
    assert "refused:" in out
    assert done.stderr == ""


def test_compare_uses_the_predictions_train_recorded_only_for_the_same_rows(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlops_ci.registry import EVALUATION_ARTIFACT as ARTIFACT
    from mlops_ci.steps.compare import compare

    c = str(project)
    assert run_cli("train", "-c", c) == 0
    assert run_cli("compare", "-c", c) == 0
    assert run_cli("register", "-c", c) == 0
    assert (
        run_cli("promote", "-c", c, "--version", "@candidate", "--by", "ci", "--reason", "x") == 0
    )
    assert run_cli("train", "-c", c, "--param", "C=0.5") == 0
    config = load_config(project)
    reg = registry_for(project)
    loads: list[str] = []
    real_load = reg.load_model
    monkeypatch.setattr(
        reg, "load_model", lambda uri, runner: loads.append(uri) or real_load(uri, runner)
    )

    recorded = compare(config, reg)
    assert recorded.evaluation["scored"] == {"candidate": "at train", "production": "at train"}
    assert loads == []  # no model loaded: neither skops nor scikit-learn imported for it
    text = reg.read_artifact_text(recorded.candidate.run_id or "", ARTIFACT)
    assert text is not None and json.loads(text)["sha256"] == recorded.evaluation["sha256"]

    # the same comparison when the models are scored now: the record changes nothing
    monkeypatch.setattr("mlops_ci.evaluation.predictions.cached", lambda *a: None)
    fresh = compare(config, reg)
    assert fresh.evaluation["scored"] == {"candidate": "now", "production": "now"}
    assert len(loads) == 2
    assert fresh.candidate.metrics == recorded.candidate.metrics
    assert fresh.production is not None and recorded.production is not None
    assert fresh.production.metrics == recorded.production.metrics
    assert fresh.significance == recorded.significance
    monkeypatch.undo()

    # other rows than train scored: both models are loaded and scored on them
    data = project / "data" / "test.csv"
    lines = data.read_text().splitlines()
    data.write_text("\n".join(lines[:-5]) + "\n")
    changed = compare(load_config(project), registry_for(project))
    assert changed.evaluation["scored"] == {"candidate": "now", "production": "now"}
    assert changed.evaluation["rows"] == len(lines) - 1 - 5
