"""The GitHub Actions and workflow templates as files: metadata, GitHub's schemas, real
linters (actionlint with shellcheck, zizmor) and the rules the templates keep (pins, least
privilege, where secrets go, declared outputs). They run in nektos/act in ``tests/workflows/``."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from mlops_ci import __version__
from mlops_ci.steps import STEPS
from mlops_ci.steps.init import init_project

ROOT = Path(__file__).resolve().parents[2]
ACTIONS = sorted(p.parent for p in (ROOT / "actions").glob("*/action.yml"))
ACTION_FILES = [ROOT / "action.yml", *(a / "action.yml" for a in ACTIONS)]
TEMPLATES = sorted((ROOT / "templates" / "github").glob("*.yml"))
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))


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
        "quality",
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
