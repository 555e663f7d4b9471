"""The GitHub Actions and workflow templates: metadata, real linters, and what act cannot run.

The templates and the step actions run in nektos/act (``tests/workflows/``); what stays here
runs the umbrella action and the deploy/drift actions through ``harness.py``, which the
templates do not use."""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from mlops_ci import __version__
from mlops_ci.scaffold import init_project
from mlops_ci.steps import STEPS
from tests.actions.harness import Runner, parse_outputs, run_action

ROOT = Path(__file__).resolve().parents[2]
ACTIONS = sorted(p.parent for p in (ROOT / "actions").glob("*/action.yml"))
ACTION_FILES = [ROOT / "action.yml", *(a / "action.yml" for a in ACTIONS)]
TEMPLATES = sorted((ROOT / "templates" / "github").glob("*.yml"))
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
TOKEN = "ghs_actions_harness_SECRET"


def run_steps(meta: dict) -> list[dict]:  # type: ignore[type-arg]
    return [s for s in meta["runs"]["steps"] if "run" in s]


@pytest.mark.parametrize("path", ACTION_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_action_metadata_is_complete_and_inputs_go_through_env(path: Path) -> None:
    meta = yaml.safe_load(path.read_text())
    assert meta["name"] and meta["description"] and meta["author"]
    assert meta["branding"]["icon"] and meta["branding"]["color"]
    for kind in ("inputs", "outputs"):
        for name, spec in meta.get(kind, {}).items():
            assert spec.get("description"), f"{kind}.{name} has no description"
    for step in run_steps(meta):
        assert "${{" not in step["run"], f"expression inside run: in {path}"
        assert step["shell"] == "bash"


def test_every_step_action_is_a_known_step() -> None:
    names = {a.name for a in ACTIONS}
    assert names == {
        "setup",
        "train",
        "compare",
        "register",
        "package",
        "deploy",
        "drift",
        "report",
    }
    assert names - {"setup"} <= set(STEPS)


def test_actions_and_workflows_validate_against_githubs_schemas() -> None:
    for schema, files in (
        ("vendor.github-actions", ACTION_FILES),
        ("vendor.github-workflows", [*TEMPLATES, *WORKFLOWS]),
    ):
        done = subprocess.run(
            ["check-jsonschema", "--builtin-schema", schema, *map(str, files)],
            capture_output=True,
            text=True,
        )
        assert done.returncode == 0, done.stdout + done.stderr


def test_actionlint_and_shellcheck_find_nothing(tmp_path: Path) -> None:
    """A current actionlint with shellcheck on the workflows; shellcheck on every script and on
    the bash of every composite action's steps (which actionlint does not read)."""
    shellcheck = shutil.which("shellcheck")
    assert shellcheck and shutil.which("actionlint"), "pip install -e '.[test]' brings both"
    lint = subprocess.run(
        ["actionlint", "-shellcheck", shellcheck, *map(str, [*TEMPLATES, *WORKFLOWS])],
        capture_output=True,
        text=True,
    )
    assert lint.returncode == 0, lint.stdout + lint.stderr
    scripts = [ROOT / ".ci" / "run", *sorted((ROOT / "actions").rglob("*.sh"))]
    for path in ACTION_FILES:
        for i, step in enumerate(yaml.safe_load(path.read_text())["runs"]["steps"]):
            if "run" in step:
                assert "${{" not in step["run"], f"{path}: step {i} expands an expression"
                script = tmp_path / f"{path.parent.name}-{i}.sh"
                script.write_text("#!/usr/bin/env bash\n" + step["run"])
                scripts.append(script)
    check = subprocess.run([shellcheck, *map(str, scripts)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr


@pytest.mark.parametrize("persona", ["regular", "pedantic", "auditor"])
def test_zizmor_finds_nothing(persona: str) -> None:
    """Every workflow and action file, each named on its own (a folder audits none of them),
    at zizmor's default, pedantic and auditor personas; an ignore must say why."""
    for path in [*ACTION_FILES, *TEMPLATES, *WORKFLOWS]:
        done = subprocess.run(
            [
                "zizmor",
                "--offline",
                "--no-progress",
                f"--persona={persona}",
                "--config",
                str(ROOT / "zizmor.yml"),
                str(path),
            ],  # fmt: skip
            capture_output=True,
            text=True,
        )
        out = done.stdout + done.stderr
        assert done.returncode == 0 and "No findings to report" in out, f"{path.name}: {out}"
        for ignore in re.findall(r"# zizmor: ignore\[[^\]]+\](.*)", path.read_text()):
            assert len(ignore.strip()) > 20, f"{path.name}: an ignore without its reason"


@pytest.mark.parametrize("path", [*TEMPLATES, *WORKFLOWS], ids=lambda p: p.name)
def test_workflows_pin_actions_and_grant_least_privilege(path: Path) -> None:
    text = path.read_text()
    for ref in re.findall(r"^\s*(?:-\s+)?uses:\s*(\S+)", text, re.MULTILINE):
        ok = (
            ref.startswith("./")
            or re.fullmatch(r"[\w.-]+/[\w.-]+(/[\w./-]+)?@[0-9a-f]{40}", ref)
            or ref.startswith("mlops-ci/mlops-ci/actions/")
            and ref.endswith(f"@v{__version__}")
        )
        assert ok, f"{path.name}: {ref} is not pinned"
    workflow = yaml.safe_load(text)
    assert workflow["permissions"] == {}, f"{path.name}: top-level permissions must be {{}}"
    for name, job in workflow["jobs"].items():
        assert "permissions" in job, f"{path.name}: job {name} declares no permissions"


MLOPS_STEPS_WITH_REGISTRY = ("train", "compare", "report", "register", "package", "deploy")


@pytest.mark.parametrize("path", [*TEMPLATES, *WORKFLOWS], ids=lambda p: p.name)
def test_secrets_reach_only_the_mlops_ci_steps_that_need_them(path: Path) -> None:
    """A secret never sits in a job's env (every step, the pull request's code included, would
    see it), never in a `run:` step or a third-party action, and no workflow takes `secrets:
    inherit`; it goes to the mlops-ci steps that talk to MLflow, by name."""
    text = path.read_text()
    workflow = yaml.safe_load(text)
    assert "secrets: inherit" not in re.sub(r"#.*", "", text), f"{path.name}: secrets: inherit"
    for name, job in workflow["jobs"].items():
        job_env = json.dumps(job.get("env", {}))
        assert "secrets." not in job_env, f"{path.name}: job {name} puts a secret in its env"
        for step in job.get("steps", []):
            if "secrets." not in json.dumps(step):
                continue
            uses = step.get("uses", "")
            allowed = (
                uses.startswith("mlops-ci/mlops-ci/actions/")
                and uses.split("/")[3].split("@")[0] in MLOPS_STEPS_WITH_REGISTRY
            )
            label = step.get("name") or step.get("id") or uses or "a run step"
            assert allowed, f"{path.name}: job {name} step {label!r} is handed a secret"


@pytest.mark.parametrize(
    "path", [*TEMPLATES, *ACTION_FILES], ids=lambda p: p.parent.name + "/" + p.name
)
def test_every_step_output_a_workflow_reads_is_one_its_action_declares(path: Path) -> None:
    """``steps.ID.outputs.NAME`` of a step that uses one of our actions names an output that
    action declares (act, unlike GitHub, also lets a composite's inner outputs through, so a
    renamed output would pass there unseen)."""
    meta = yaml.safe_load(path.read_text())
    jobs = (
        meta.get("jobs", {}).values()
        if "jobs" in meta
        else [{"steps": meta["runs"].get("steps", [])}]
    )
    for job in jobs:
        uses = {}
        for step in job.get("steps", []):
            ref = step.get("uses", "")
            if step.get("id") and "/actions/" in ref and ref.startswith("mlops-ci/mlops-ci/"):
                uses[step["id"]] = ref.split("/actions/")[1].split("@")[0]
        text = json.dumps(job)
        for step_id, name in re.findall(r"steps\.([\w-]+)\.outputs\.([\w-]+)", text):
            if step_id in uses:
                declared = yaml.safe_load(
                    (ROOT / "actions" / uses[step_id] / "action.yml").read_text()
                )
                assert name in declared.get("outputs", {}), (
                    f"{path.name}: steps.{step_id}.outputs.{name}"
                )


def test_init_copies_the_templates_pointing_at_this_version(tmp_path: Path) -> None:
    result = init_project(tmp_path, ci="github", actions_repo="acme/mlops-ci")
    copied = sorted(p.name for p in (tmp_path / ".github" / "workflows").glob("*.yml"))
    assert copied == [t.name for t in TEMPLATES]
    assert len(result.written) == len(TEMPLATES) + 1
    text = (tmp_path / ".github" / "workflows" / "mlops-pr.yml").read_text()
    assert f"uses: acme/mlops-ci/actions/train@v{__version__}" in text
    assert "mlops-ci/mlops-ci/" not in text


def test_output_file_parsing_handles_heredocs() -> None:
    text = "a=1\nb<<EOF_x\nline 1\nline=2\nEOF_x\nc=3\n"
    assert parse_outputs(text) == {"a": "1", "b": "line 1\nline=2", "c": "3"}


# --- the actions run as GitHub would run them ------------------------------------------------


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runner]:
    """A job whose setup action really installed mlops-ci (from this checkout) into a venv."""
    temp = tmp_path_factory.mktemp("runner")
    workspace = tmp_path_factory.mktemp("workspace")
    shutil.copytree(ROOT / "examples" / "iris", workspace / "iris")
    env = {
        k: v
        for k, v in __import__("os").environ.items()
        if not k.startswith(("GITHUB_", "MLFLOW_", "RUNNER_"))
    }
    runner = Runner(workspace=workspace, temp=temp, env={**env, "GITHUB_ACTIONS": "true"})
    python = {"python": {"python-path": sys.executable, "python-version": "3.11"}}
    setup = run_action(ROOT / "actions" / "setup", runner, uses_outputs=python)
    assert setup.returncode == 0, setup.stdout
    assert setup.outputs["version"] == __version__
    assert setup.outputs["installer"] == "uv", setup.stdout  # pip only where uv cannot be had
    assert runner.path and (Path(runner.path[0]) / "mlops-ci").exists()
    yield runner


@pytest.mark.slow
def test_umbrella_action_runs_a_verb_and_refuses_unknown_ones(installed: Runner) -> None:
    python = {"python": {"python-path": sys.executable}}
    root = ROOT  # the umbrella's action_path is the repository root
    ok = run_action(
        root, installed, {"command": "validate", "config": "iris"}, {"token": "x"}, python
    )
    assert ok.returncode == 0, ok.stdout
    assert "valid (model iris-classifier)" in ok.stdout
    bad = run_action(root, installed, {"command": "rm -rf /"}, {"token": "x"}, python)
    assert bad.returncode == 2
    assert "::error::input command: 'rm -rf /' is not one of" in bad.stdout


@pytest.mark.slow
def test_umbrella_action_keeps_tokens_from_the_training_code(installed: Runner) -> None:
    """train runs the pull request's code: neither the action's github-token nor the runner's
    own credentials reach it."""
    project = installed.workspace / "iris-secrets"
    shutil.copytree(ROOT / "examples" / "iris", project)
    (project / "envdump.py").write_text(
        "import json, os, runpy\n"
        "json.dump(sorted(os.environ), open('env.json', 'w'))\n"
        "runpy.run_path('train.py', run_name='__main__')\n"
    )
    config = project / "mlops.yaml"
    config.write_text(config.read_text().replace("{python} train.py", "{python} envdump.py"))
    secrets = {
        "GITHUB_TOKEN": "from-the-workflow",
        "ACTIONS_RUNTIME_TOKEN": "runtime",
        "ACTIONS_ID_TOKEN_REQUEST_TOKEN": "oidc",
        "SYSTEM_ACCESSTOKEN": "azure",
    }
    runner = dataclasses.replace(
        installed, env={**installed.env, **secrets}, path=list(installed.path), log=[]
    )
    python = {"python": {"python-path": sys.executable}}
    inputs = {"command": "train", "config": "iris-secrets"}
    done = run_action(ROOT, runner, inputs, {"token": "the-action-token"}, python)
    assert done.returncode == 0, done.stdout
    seen = set(json.loads((project / "env.json").read_text()))
    assert "MLOPS_PARAMS" in seen and "PATH" in seen
    assert not seen & {*secrets, "INPUT_GITHUB_TOKEN"}, seen & {*secrets, "INPUT_GITHUB_TOKEN"}


@pytest.mark.slow
def test_deploy_and_drift_actions_on_the_example(installed: Runner) -> None:
    """Deploy v1 of its own copy of the example (trained, compared, registered and packaged
    here, whatever ran before) to a local staging endpoint with the deploy action, then check
    drift with the drift action."""
    from mlops_ci.config import load_config
    from mlops_ci.registry.mlflow import MlflowRegistry
    from mlops_ci.steps.compare import compare
    from mlops_ci.steps.package import package
    from mlops_ci.steps.register import register
    from mlops_ci.steps.train import train
    from mlops_ci.targets.local import LocalTarget
    from tests.serve_helpers import free_port

    runner = installed
    project = runner.workspace / "iris-deploy"
    shutil.copytree(ROOT / "examples" / "iris", project)
    (project / "mlops.yaml").write_text(
        (project / "mlops.yaml").read_text()
        + "  profile: {single_row_runs: 20, batch_sizes: [1]}\n"
    )
    config = load_config(project)
    reg = MlflowRegistry.for_config(config, honour_env=False)
    run = train(config, reg)
    compare(config, reg, run.run_id)
    assert register(config, reg, run.run_id).version == "1"
    package(config, reg, "1", build=False)
    text = (project / "mlops.yaml").read_text()
    (project / "mlops.yaml").write_text(
        text + f"deploy:\n  staging: {{target: local, port: {free_port()}, rollout: "
        "{steps: [100], window_seconds: 0.5, probe_requests: 10, min_requests: 5}}\n"
        "monitor: {drift: {min_rows: 10}}\n"
    )
    cfg = {"config": "iris-deploy"}
    try:
        deployed = run_action(
            ROOT / "actions" / "deploy",
            runner,
            {**cfg, "version": "1", "environment": "staging"},
            {"token": TOKEN},
        )
        assert deployed.returncode == 0, deployed.stdout
        assert deployed.outputs["status"] == "serving" and deployed.outputs["version"] == "1"
        assert deployed.outputs["url"].startswith("http://127.0.0.1:")
        assert "gate comparison: passed" in deployed.stdout

        strict = run_action(
            ROOT / "actions" / "drift",
            runner,
            {**cfg, "current": "iris-deploy/data/test.csv"},
            {"token": TOKEN},
        )
        # the 60 test rows differ from the training rows in 3 of 4 features (min_rows 10)
        assert strict.returncode == 1, strict.stdout
        assert "Data drift: **drift**" in strict.stdout
        shifted = project / "data" / "shifted.csv"
        shifted.write_text(
            "sepal_length,sepal_width,petal_length,petal_width\n"
            + "".join(
                f"{9 + i / 100},{5 + i / 100},{9 + i / 100},{4 + i / 100}\n" for i in range(50)
            )
        )
        found = run_action(
            ROOT / "actions" / "drift",
            runner,
            {**cfg, "current": "iris-deploy/data/shifted.csv", "fail-on-drift": "false"},
            {"token": TOKEN},
        )
        assert found.returncode == 0 and found.outputs["verdict"] == "drift"
        assert set(found.outputs["drifted"].split(",")) == {
            "sepal_length",
            "sepal_width",
            "petal_length",
            "petal_width",
        }
    finally:
        config = load_config(project)
        LocalTarget(config, config.deploy["staging"]).stop()
