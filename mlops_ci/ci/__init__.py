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

from mlops_ci.credentials import redact_text
from mlops_ci.errors import ConfigError, MlopsError
from mlops_ci.records import FOLDER
from mlops_ci.ui.printable import escape_controls

_CONFIG_LINE = re.compile(r"^[^:]+:(\d+): (.*)$")


def _env(env: Mapping[str, str] | None) -> Mapping[str, str]:
    return os.environ if env is None else env


def in_github(env: Mapping[str, str] | None = None) -> bool:
    return _env(env).get("GITHUB_ACTIONS") == "true"


def in_azure(env: Mapping[str, str] | None = None) -> bool:
    return bool(_env(env).get("TF_BUILD")) and not in_github(env)


def vso(command: str, properties: Mapping[str, str] | None = None, data: str = "") -> str:
    """An Azure Pipelines logging command, escaped as azure-pipelines-task-lib escapes them."""
    props = "".join(f"{k}={_vso_property(v)};" for k, v in (properties or {}).items())
    return (
        f"##vso[{command} {props}]{_vso_data(data)}"
        if props
        else f"##vso[{command}]{_vso_data(data)}"
    )


def _vso_data(text: str) -> str:
    out = text.replace("%", "%AZP25").replace("\r", "%0D").replace("\n", "%0A")
    return escape_controls(out)


def _vso_property(text: str) -> str:
    return _vso_data(text).replace("]", "%5D").replace(";", "%3B")


def mask_secret(name: str, value: str, env: Mapping[str, str] | None = None) -> list[str]:
    """Commands that make the CI hide ``value`` in its logs from now on."""
    env = _env(env)
    if in_github(env):
        return [f"::add-mask::{value}"]
    if in_azure(env):
        return [vso("task.setvariable", {"variable": name, "issecret": "true"}, value)]
    return []


def warning_annotation(message: str, env: Mapping[str, str] | None = None) -> list[str]:
    env = _env(env)
    if in_github(env):
        return [f"::warning title=mlops-ci::{_escape(message, env)}"]
    if in_azure(env):
        return [_azure_issue({"type": "warning"}, message, env)]
    return []


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
            variable = azure_output_name(key)
            print(vso("task.setvariable", {"variable": variable, "isoutput": "true"}, first_line))


def azure_output_name(key: str) -> str:
    """An output's name as Azure Pipelines wants it: letters and digits only (task.json's
    outputVariables), so ``run_id`` and ``deploy-status`` become ``runId`` and ``deployStatus``."""
    first, *rest = re.split(r"[^A-Za-z0-9]+", key)
    return first + "".join(part[:1].upper() + part[1:] for part in rest)


def write_summary(
    markdown: str, env: Mapping[str, str] | None = None, name: str = "mlops-ci"
) -> bool:
    """Append to the GitHub job summary, or attach to the Azure Pipelines run summary
    (``##vso[task.uploadsummary]`` of a markdown file); False outside both."""
    env = _env(env)
    path = env.get("GITHUB_STEP_SUMMARY")
    if path:
        with Path(path).open("a", encoding="utf-8") as fh:
            fh.write(markdown.rstrip("\n") + "\n")
        return True
    if in_azure(env):
        folder = Path(env.get("AGENT_TEMPDIRECTORY") or Path.cwd() / FOLDER)
        folder.mkdir(parents=True, exist_ok=True)
        summary = folder / f"{name}-{uuid.uuid4().hex[:8]}.md"
        summary.write_text(markdown.rstrip("\n") + "\n", encoding="utf-8")
        print(vso("task.uploadsummary", data=str(summary)))
        return True
    return False


def error_annotations(err: MlopsError, env: Mapping[str, str] | None = None) -> list[str]:
    """``::error`` (GitHub) or ``##vso[task.logissue]`` (Azure) commands for an error,
    pointing at the config file and line when known."""
    env = _env(env)
    if in_azure(env):
        return _azure_issues(err, env)
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
                out.append(
                    f"::error file={file},line={line},title={title}::{_escape(message, env)}"
                )
            else:
                out.append(f"::error file={file},title={title}::{_escape(problem, env)}")
        return out
    message = str(err) + (f" (hint: {err.hint})" if err.hint else "")
    return [f"::error title={title}::{_escape(message, env)}"]


def _azure_issues(err: MlopsError, env: Mapping[str, str]) -> list[str]:
    if isinstance(err, ConfigError) and err.file is not None:
        file = _relative(err.file, env.get("BUILD_SOURCESDIRECTORY"))
        out = []
        for problem in err.problems:
            match = _CONFIG_LINE.match(problem)
            props = {"type": "error", "sourcepath": file}
            if match:
                props["linenumber"] = match.group(1)
            out.append(_azure_issue(props, match.group(2) if match else problem, env))
        return out
    message = str(err) + (f" (hint: {err.hint})" if err.hint else "")
    return [_azure_issue({"type": "error"}, message, env)]


def _azure_issue(properties: Mapping[str, str], message: str, env: Mapping[str, str]) -> str:
    """An Azure annotation (``task.logissue``) of a message without credentials (the values
    of ``env``'s secret variables, any URL's userinfo)."""
    return vso("task.logissue", properties, redact_text(message, env))


def _relative(path: Path, workspace: str | None) -> str:
    try:
        return path.resolve().relative_to(Path(workspace or os.getcwd()).resolve()).as_posix()
    except ValueError:
        return path.as_posix()


def _escape(text: str, env: Mapping[str, str]) -> str:
    """A GitHub annotation's message: credentials masked (``redact_text``: the values of
    ``env``'s secret variables, any URL's userinfo), then workflow-command data escaping, as
    @actions/core does it; other control and bidi characters (from user strings in a message)
    shown escaped, as everywhere we print."""
    out = redact_text(text, env).replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
    return escape_controls(out)
