"""Run a composite action's `run:` steps the way the GitHub runner does, on this machine.

Inputs become `${{ inputs.* }}` values, each step gets its own GITHUB_OUTPUT file and the
`env:` it declares, GITHUB_PATH additions reach later steps, and the action's outputs are
read back from step outputs. `uses:` steps (setup-python, cache) are stood in for by the
caller, which supplies their outputs.
"""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

EXPRESSION = re.compile(r"\$\{\{\s*(.*?)\s*\}\}")


@dataclass
class Runner:
    """State shared by the actions of one job: PATH additions, temp folder, base env."""

    workspace: Path
    temp: Path
    env: dict[str, str]
    path: list[str] = field(default_factory=list)
    log: list[str] = field(default_factory=list)


@dataclass
class ActionRun:
    outputs: dict[str, str]
    returncode: int
    stdout: str


def parse_outputs(text: str) -> dict[str, str]:
    """GITHUB_OUTPUT's format: key=value lines and key<<DELIMITER heredocs."""
    out: dict[str, str] = {}
    lines = iter(text.splitlines())
    for line in lines:
        if "<<" in line and ("=" not in line or line.index("<<") < line.index("=")):
            key, delimiter = line.split("<<", 1)
            value = []
            for body in lines:
                if body == delimiter:
                    break
                value.append(body)
            out[key] = "\n".join(value)
        elif "=" in line:
            key, value = line.split("=", 1)
            out[key] = value
    return out


def run_action(
    action_dir: Path,
    runner: Runner,
    inputs: dict[str, str] | None = None,
    github: dict[str, str] | None = None,
    uses_outputs: dict[str, dict[str, str]] | None = None,
) -> ActionRun:
    meta = yaml.safe_load((action_dir / "action.yml").read_text())
    assert meta["runs"]["using"] == "composite"
    given = dict(inputs or {})
    for name, spec in meta.get("inputs", {}).items():
        if name not in given:
            if spec.get("required"):
                raise ValueError(f"input {name} is required")
            given[name] = str(spec.get("default", ""))
    context: dict[str, Any] = {
        "inputs": given,
        "github": {"action_path": str(action_dir), **(github or {})},
        "runner": {"os": "Linux", "temp": str(runner.temp)},
        "steps": {},
    }
    for name, value in list(given.items()):  # defaults may be expressions (github.token)
        given[name] = evaluate(value, context)
    stdout: list[str] = []
    for i, step in enumerate(meta["runs"]["steps"]):
        step_id = step.get("id", f"step{i}")
        if "uses" in step:
            context["steps"][step_id] = {"outputs": dict((uses_outputs or {}).get(step_id, {}))}
            continue
        assert step.get("shell") == "bash", (
            f"{action_dir.name}: step {step_id} must set shell: bash"
        )
        output_file = runner.temp / f"{action_dir.name}-{step_id}.output"
        path_file = runner.temp / f"{action_dir.name}-{step_id}.path"
        output_file.write_text("")
        path_file.write_text("")
        env = {
            **runner.env,
            "PATH": os.pathsep.join([*runner.path, runner.env.get("PATH", os.defpath)]),
            "GITHUB_OUTPUT": str(output_file),
            "GITHUB_PATH": str(path_file),
            "GITHUB_ACTION_PATH": str(action_dir),
            "RUNNER_TEMP": str(runner.temp),
            "GITHUB_WORKSPACE": str(runner.workspace),
        }
        env.update({k: evaluate(str(v), context) for k, v in step.get("env", {}).items()})
        script = runner.temp / f"{action_dir.name}-{step_id}.sh"
        script.write_text(step["run"])
        done = subprocess.run(
            ["bash", "--noprofile", "--norc", "-eo", "pipefail", str(script)],
            cwd=runner.workspace / step.get("working-directory", "."),
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        stdout.append(done.stdout + done.stderr)
        runner.log.append(done.stdout + done.stderr)
        context["steps"][step_id] = {"outputs": parse_outputs(output_file.read_text())}
        runner.path[:0] = [p for p in path_file.read_text().splitlines() if p]
        if done.returncode != 0:
            return ActionRun({}, done.returncode, "\n".join(stdout))
    outputs = {
        name: evaluate(spec["value"], context) for name, spec in meta.get("outputs", {}).items()
    }
    return ActionRun(outputs, 0, "\n".join(stdout))


def evaluate(text: str, context: dict[str, Any]) -> str:
    """Replace `${{ a.b.c }}` property paths; anything fancier is not needed by our actions."""

    def lookup(match: re.Match[str]) -> str:
        value: Any = context
        parts = match.group(1).split(".")
        for part in parts:
            if not isinstance(value, dict) or part not in value:
                if parts[0] == "steps":  # an output a step did not set is empty, as on GitHub
                    return ""
                raise KeyError(f"unknown expression {match.group(0)}")
            value = value[part]
        return str(value)

    return EXPRESSION.sub(lookup, text)
