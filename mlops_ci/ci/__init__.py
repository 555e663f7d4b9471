"""CI platform adapters: step outputs, job summary, error annotations and secret masking.

GitHub Actions reads files named by GITHUB_OUTPUT / GITHUB_STEP_SUMMARY and workflow commands
on stdout (``::error file=…,line=…::``); Azure Pipelines reads ``##vso[…]`` logging commands.
Outside CI these do nothing.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Mapping
from pathlib import Path

from mlops_ci.errors import ConfigError, MlopsError

_CONFIG_LINE = re.compile(r"^[^:]+:(\d+): (.*)$")


def _env(env: Mapping[str, str] | None) -> Mapping[str, str]:
    return os.environ if env is None else env


def in_github(env: Mapping[str, str] | None = None) -> bool:
    return _env(env).get("GITHUB_ACTIONS") == "true"


def emit_outputs(outputs: Mapping[str, str], env: Mapping[str, str] | None = None) -> None:
    """Publish step outputs: GITHUB_OUTPUT in GitHub Actions, ##vso in Azure Pipelines."""
    env = _env(env)
    if env.get("GITHUB_OUTPUT"):
        with Path(env["GITHUB_OUTPUT"]).open("a", encoding="utf-8") as fh:
            for key, value in outputs.items():
                if "\n" in value:
                    delimiter = f"ghadelimiter_{uuid.uuid4().hex}"
                    fh.write(f"{key}<<{delimiter}\n{value}\n{delimiter}\n")
                else:
                    fh.write(f"{key}={value}\n")
    elif env.get("TF_BUILD"):
        for key, value in outputs.items():
            first_line = value.splitlines()[0] if value else ""
            print(f"##vso[task.setvariable variable={key};isOutput=true]{first_line}")


def write_summary(markdown: str, env: Mapping[str, str] | None = None) -> bool:
    """Append to the GitHub job summary; False when not in GitHub Actions."""
    path = _env(env).get("GITHUB_STEP_SUMMARY")
    if not path:
        return False
    with Path(path).open("a", encoding="utf-8") as fh:
        fh.write(markdown.rstrip("\n") + "\n")
    return True


def error_annotations(err: MlopsError, env: Mapping[str, str] | None = None) -> list[str]:
    """GitHub ``::error`` commands for an error, pointing at the config file and line if known."""
    env = _env(env)
    if not in_github(env):
        return []
    title = "mlops-ci: the gate said no" if err.exit_code == 1 else "mlops-ci"
    if isinstance(err, ConfigError) and err.file is not None:
        file = _relative(err.file, env.get("GITHUB_WORKSPACE"))
        out = []
        for problem in err.problems:
            match = _CONFIG_LINE.match(problem)
            if match:
                line, message = match.groups()
                out.append(f"::error file={file},line={line},title={title}::{_escape(message)}")
            else:
                out.append(f"::error file={file},title={title}::{_escape(problem)}")
        return out
    message = str(err) + (f" (hint: {err.hint})" if err.hint else "")
    return [f"::error title={title}::{_escape(message)}"]


def _relative(path: Path, workspace: str | None) -> str:
    try:
        return path.resolve().relative_to(Path(workspace or os.getcwd()).resolve()).as_posix()
    except ValueError:
        return path.as_posix()


def _escape(text: str) -> str:
    """Workflow-command data escaping, as @actions/core does it."""
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
