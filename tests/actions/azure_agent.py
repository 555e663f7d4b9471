"""The step templates of ``templates/azure-pipelines/`` run as the Azure Pipelines agent runs a
job's script steps (no agent can run here: it needs an Azure DevOps organisation).

What the agent does and this does alike: template expressions ``${{ parameters.NAME }}`` are
filled in when the pipeline is compiled (a template's defaults, the caller's ``parameters``);
macros ``$(Name)`` in a step's ``env`` are replaced at run time by the variable's value, and
one the pipeline never defined stays as written; every non-secret variable is also in the
environment as ``NAME_WITH_UNDERSCORES`` (``Build.Reason`` → ``BUILD_REASON``), a secret only
where a step maps it; a ``bash:`` step is a script file run with ``bash --noprofile --norc``;
``##vso[task.setvariable variable=V;isoutput=true;]`` from step ``S`` becomes the variable
``S.V``; a step's ``condition`` is an expression of ``and``, ``or``, ``not``, ``eq``, ``ne``,
``succeeded()``, ``failed()``, ``succeededOrFailed()``, ``always()`` and ``variables['X']``
(anything else fails the test rather than being guessed at). ``task:`` steps are not run (the
task has its own runner test); the job has mlops-ci on PATH as setup.yml would leave it.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

TEMPLATES = Path(__file__).resolve().parents[2] / "templates" / "azure-pipelines"
SECRETS = {"System.AccessToken"}  # never in the environment unless a step maps it


def output_variables(stdout: str) -> dict[str, str]:
    """The output variables a step set (``##vso[task.setvariable ...;isoutput=true;]``)."""
    command = r"##vso\[task\.setvariable variable=([^;\]]+);isoutput=true;\]([^\r\n]*)"
    return dict(re.findall(command, stdout))


@dataclass
class StepRun:
    name: str
    result: str  # Succeeded, Failed, Skipped
    stdout: str = ""
    stderr: str = ""


@dataclass
class AgentJob:
    """One job: its working folder, its variables, and what its steps did."""

    workdir: Path
    variables: dict[str, str]
    temp: Path
    runs: list[StepRun] = field(default_factory=list)

    def steps(self, template: str, parameters: dict[str, str] | None = None) -> list[dict]:  # type: ignore[type-arg]
        """The template's steps with its parameters filled in (defaults, then the caller's)."""
        doc = yaml.safe_load((TEMPLATES / template).read_text())
        values = {p["name"]: str(p.get("default", "")) for p in doc.get("parameters", [])}
        unknown = set(parameters or {}) - set(values)
        assert not unknown, f"{template} declares no parameters {unknown}"
        values.update(parameters or {})

        def fill(node: Any) -> Any:
            if isinstance(node, dict):
                return {k: fill(v) for k, v in node.items()}
            if isinstance(node, list):
                return [fill(v) for v in node]
            if isinstance(node, str):
                text = re.sub(
                    r"\$\{\{\s*parameters\.(\w+)\s*\}\}", lambda m: values[m.group(1)], node
                )
                assert "${{" not in text, f"{template}: an expression this runner does not know"
                return text
            return node

        return list(fill(doc["steps"]))

    def macro(self, text: str) -> str:
        names = {k.lower(): v for k, v in self.variables.items()}
        return re.sub(
            r"\$\(([\w.]+)\)", lambda m: names.get(m.group(1).lower(), m.group(0)), str(text)
        )

    def run_template(self, template: str, parameters: dict[str, str] | None = None) -> None:
        for step in self.steps(template, parameters):
            if "bash" in step:
                self.run_bash(step)

    def run_bash(self, step: dict) -> StepRun:  # type: ignore[type-arg]
        name = step.get("name") or step.get("displayName") or f"step{len(self.runs)}"
        if not Condition(self).holds(step.get("condition", "succeeded()")):
            self.runs.append(StepRun(name, "Skipped"))
            return self.runs[-1]
        env = {
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}/usr/bin:/bin",
            "HOME": os.environ.get("HOME", "/root"),
            "TF_BUILD": "True",
            "AGENT_TEMPDIRECTORY": str(self.temp),
            "BUILD_SOURCESDIRECTORY": str(self.workdir),
            "MLOPS_CI_CACHE_DIR": str(self.temp / "mlops-ci-cache"),
        }
        env.update(
            {
                re.sub(r"\W", "_", k).upper(): v
                for k, v in self.variables.items()
                if k not in SECRETS
            }
        )
        env.update({k: self.macro(v) for k, v in (step.get("env") or {}).items()})
        script = self.temp / f"{name}.sh"
        script.write_text(step["bash"])
        done = subprocess.run(
            ["bash", "--noprofile", "--norc", str(script)],
            cwd=self.workdir,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        for var, value in output_variables(done.stdout).items():
            self.variables[f"{name}.{var}"] = value
        result = "Succeeded" if done.returncode == 0 else "Failed"
        self.runs.append(StepRun(name, result, done.stdout, done.stderr))
        return self.runs[-1]

    def result(self, name: str) -> StepRun:
        (found,) = [r for r in self.runs if r.name == name]
        return found


class Condition:
    """Azure's condition expressions, the part the templates use."""

    TOKEN = re.compile(r"\s*(?:(\w+)\s*\(|(\))|(,)|'((?:[^']|'')*)'|variables\['([^']+)'\])")

    def __init__(self, job: AgentJob) -> None:
        self.job = job

    def holds(self, text: str) -> bool:
        self.text, self.at = " ".join(str(text).split()), 0
        value = self._expr()
        assert self.text[self.at :].strip() == "", f"cannot read condition {text!r}"
        return bool(value)

    def _next(self) -> re.Match[str]:
        m = self.TOKEN.match(self.text, self.at)
        assert m, f"cannot read condition {self.text!r} at {self.at}"
        self.at = m.end()
        return m

    def _expr(self) -> Any:
        m = self._next()
        if m.group(4) is not None:
            return m.group(4).replace("''", "'")
        if m.group(5) is not None:
            return self.job.variables.get(m.group(5), "")
        fn = m.group(1)
        assert fn, f"cannot read condition {self.text!r}"
        args = []
        while True:
            after = self.TOKEN.match(self.text, self.at)
            if after and after.group(2):
                self.at = after.end()
                break
            args.append(self._expr())
            sep = self._next()
            if sep.group(2):
                break
            assert sep.group(3), f"cannot read condition {self.text!r}"
        failed = any(r.result == "Failed" for r in self.job.runs)
        functions = {
            "succeeded": lambda: not failed,
            "failed": lambda: failed,
            "succeededOrFailed": lambda: True,
            "always": lambda: True,
            "and": lambda *a: all(a),
            "or": lambda *a: any(a),
            "not": lambda a: not a,
            "eq": lambda a, b: str(a).lower() == str(b).lower(),
            "ne": lambda a, b: str(a).lower() != str(b).lower(),
        }
        assert fn in functions, f"condition function {fn}() is not one this runner knows"
        return functions[fn](*args)
