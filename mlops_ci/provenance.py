"""Where a model came from: git state, CI context, a fingerprint of its inputs, the environment.

These become tags on the MLflow run and the model version, and together with the params they
form the step cache key.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from mlops_ci.credentials import safe_url
from mlops_ci.errors import InputError
from mlops_ci.records import FOLDER, write_json_atomic, write_text_atomic

# Folders never part of a fingerprint: tool state, caches and VCS internals.
_SKIP_DIRS = {
    ".git",
    FOLDER,  # .mlops
    "__pycache__",
    ".pytest_cache",
    ".mypy_cache",
    ".ruff_cache",
    "mlruns",
}
_BLOCK = 1 << 20


@dataclass(frozen=True)
class GitInfo:
    repository: str | None
    commit: str | None
    branch: str | None
    dirty: bool | None


@dataclass(frozen=True)
class CiContext:
    provider: str  # github | azure | local
    pr: str | None
    actor: str | None
    run_url: str | None


@dataclass(frozen=True)
class Fingerprint:
    """sha256 of each input file, and one sha256 over that manifest."""

    manifest: dict[str, str]
    sha256: str


@dataclass(frozen=True)
class Lineage:
    git: GitInfo
    ci: CiContext
    inputs: Fingerprint
    environment_lock: str  # "name==version" lines, sorted
    environment_sha256: str

    def write_artifacts(self, work: Path) -> dict[str, Path]:
        """The run's lineage artifacts, written afresh under ``work``: ``lineage/`` (the inputs'
        manifest; a pipeline's graph joins it) and ``lineage/environment`` (the lock)."""
        import shutil

        folder = work / "lineage"
        if folder.exists():
            shutil.rmtree(folder)
        write_json_atomic(folder / "inputs.manifest.json", self.inputs.manifest)
        lock = write_text_atomic(work / "requirements.lock", self.environment_lock)
        return {"lineage": folder, "lineage/environment": lock}

    def tags(self) -> dict[str, str]:
        """MLflow tags: mlops.* for the toolkit, mlflow.source.* so MLflow's UI shows git too."""
        tags = {
            "mlops.ci.provider": self.ci.provider,
            "mlops.data.fingerprint": self.inputs.sha256,
            "mlops.env.sha256": self.environment_sha256,
            "mlops.env.python": sys.version.split()[0],
        }
        optional = {
            "mlops.git.repository": self.git.repository,
            "mlops.git.commit": self.git.commit,
            "mlops.git.branch": self.git.branch,
            "mlops.git.dirty": None if self.git.dirty is None else str(self.git.dirty).lower(),
            "mlops.ci.pr": self.ci.pr,
            "mlops.ci.actor": self.ci.actor,
            "mlops.ci.run_url": self.ci.run_url,
            "mlflow.source.git.commit": self.git.commit,
            "mlflow.source.git.branch": self.git.branch,
            "mlflow.source.git.repoURL": self.git.repository,
        }
        tags.update({k: v for k, v in optional.items() if v})
        return tags


def collect(root: Path, inputs: tuple[str, ...], env: Mapping[str, str] | None = None) -> Lineage:
    env = os.environ if env is None else env
    lock = environment_lock()
    return Lineage(
        git=git_info(root, env),
        ci=ci_context(env),
        inputs=fingerprint(root, inputs),
        environment_lock=lock,
        environment_sha256=hashlib.sha256(lock.encode()).hexdigest(),
    )


def fingerprint(root: Path, inputs: tuple[str, ...]) -> Fingerprint:
    """sha256 manifest of the declared inputs; a missing input is an error naming it."""
    manifest: dict[str, str] = {}
    base = root.resolve()
    for i, entry in enumerate(inputs):
        where = f"mlops.yaml: train.inputs[{i}]: '{entry}'"
        path = Path(os.path.normpath(base / entry))  # lexically: a link inside the project is in
        if not path.is_relative_to(base):
            raise InputError(
                f"{where} is outside the project folder {base}",
                hint="the fingerprint names inputs relative to mlops.yaml: copy or link the data "
                "into the project",
            )
        if not path.exists():
            raise InputError(
                f"{where} does not exist under {root}",
                hint="list only files and folders that exist before training",
            )
        files = [path] if path.is_file() else sorted(walk_files(path))
        for file in files:
            try:
                manifest[file.relative_to(base).as_posix()] = sha256_file(file)
            except OSError as err:
                raise InputError(f"{where}: cannot read {file}: {err.strerror or err}") from None
    body = json.dumps(manifest, sort_keys=True).encode()
    return Fingerprint(manifest=manifest, sha256=hashlib.sha256(body).hexdigest())


def walk_files(folder: Path) -> list[Path]:
    """The files under ``folder``, without tool state and VCS folders (``_SKIP_DIRS``)."""
    out: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = [d for d in dirnames if d not in _SKIP_DIRS]
        out.extend(Path(dirpath) / f for f in filenames)
    return out


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def environment_lock() -> str:
    """The installed distributions as sorted ``name==version`` lines (a pip-freeze-like lock),
    names normalised as PEP 503 says. A ``.dist-info`` folder is named ``{name}-{version}``
    (the wheel spec), read from its name instead of parsing every METADATA file (80 ms → 1 ms
    in a venv of 165 distributions, paid by every cached train)."""
    seen: dict[str, str] = {}
    for dist in metadata.distributions():
        name, version = _named_by_folder(dist) or (dist.metadata["Name"], dist.version)
        if name:
            seen.setdefault(re.sub(r"[-_.]+", "-", name).lower(), version)
    return "".join(f"{name}=={version}\n" for name, version in sorted(seen.items()))


def _named_by_folder(dist: metadata.Distribution) -> tuple[str, str] | None:
    folder = getattr(dist, "_path", None)
    if not isinstance(folder, Path) or folder.suffix != ".dist-info":
        return None  # an .egg-info, a zip, a custom finder: its METADATA says
    name, dash, version = folder.name.removesuffix(".dist-info").partition("-")
    return (name, version) if dash and version and "-" not in version else None


# A repository's config may name programs git runs (core.fsmonitor, hooks): mlops-ci reads
# the state of a repository the pull request's code may have written, so it runs none of them.
_NO_REPOSITORY_CODE = ("-c", "core.fsmonitor=false", "-c", "core.hooksPath=/dev/null")


def git_info(root: Path, env: Mapping[str, str]) -> GitInfo:
    """Git state of the work tree; CI variables win where a CI checkout is detached."""

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(
                ["git", *_NO_REPOSITORY_CODE, *args],
                cwd=root, capture_output=True, text=True, timeout=10, check=False,
            )  # fmt: skip
        except (OSError, subprocess.TimeoutExpired):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    inside = git("rev-parse", "--is-inside-work-tree") == "true"
    commit = (
        env.get("GITHUB_SHA")
        or env.get("BUILD_SOURCEVERSION")
        or (git("rev-parse", "HEAD") if inside else None)
    )
    branch = (
        env.get("GITHUB_HEAD_REF")
        or env.get("GITHUB_REF_NAME")
        or env.get("SYSTEM_PULLREQUEST_SOURCEBRANCH")
        or env.get("BUILD_SOURCEBRANCHNAME")
        or (git("rev-parse", "--abbrev-ref", "HEAD") if inside else None)
    )
    repository = None
    if env.get("GITHUB_REPOSITORY"):
        server = env.get("GITHUB_SERVER_URL", "https://github.com")
        repository = f"{server}/{env['GITHUB_REPOSITORY']}"
    repository = repository or env.get("BUILD_REPOSITORY_URI")
    if repository is None and inside:
        repository = git("config", "--get", "remote.origin.url")
    dirty = None
    if inside:
        status = git("status", "--porcelain", "--untracked-files=no")
        dirty = bool(status) if status is not None else None
    return GitInfo(
        repository=_strip_credentials(repository), commit=commit, branch=branch, dirty=dirty
    )


def _strip_credentials(url: str | None) -> str | None:
    """Drop ``user:token@`` (and secret query values) from a remote URL so no secret lands in
    a tag."""
    return safe_url(url, userinfo="") if url else url


def ci_context(env: Mapping[str, str]) -> CiContext:
    """Which CI runs us, the pull request and who triggered it."""
    if env.get("GITHUB_ACTIONS") == "true":
        run_url = None
        if env.get("GITHUB_RUN_ID") and env.get("GITHUB_REPOSITORY"):
            server = env.get("GITHUB_SERVER_URL", "https://github.com")
            run_url = f"{server}/{env['GITHUB_REPOSITORY']}/actions/runs/{env['GITHUB_RUN_ID']}"
        return CiContext("github", github_pr(env), env.get("GITHUB_ACTOR"), run_url)
    if env.get("TF_BUILD"):
        run_url = None
        if env.get("SYSTEM_COLLECTIONURI") and env.get("BUILD_BUILDID"):
            run_url = (
                f"{env['SYSTEM_COLLECTIONURI']}{env.get('SYSTEM_TEAMPROJECT', '')}"
                f"/_build/results?buildId={env['BUILD_BUILDID']}"
            )
        return CiContext(
            "azure",
            env.get("SYSTEM_PULLREQUEST_PULLREQUESTID") or None,
            env.get("BUILD_REQUESTEDFOR"),
            run_url,
        )
    return CiContext("local", None, local_user(env), None)


def who(env: Mapping[str, str] | None = None, root: Path | None = None) -> str:
    """Who does a step: the CI actor, else `git config user.name`, else the OS login."""
    env = os.environ if env is None else env
    return ci_context(env).actor or local_user(env, root)


def local_user(env: Mapping[str, str], root: Path | None = None) -> str:
    """`git config user.name` where git knows it, else the OS login (never "unknown")."""
    import getpass
    import subprocess

    try:
        done = subprocess.run(
            ["git", "config", "user.name"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
        if done.returncode == 0 and done.stdout.strip():
            return done.stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        pass
    try:
        return env.get("USER") or env.get("USERNAME") or getpass.getuser()
    except (KeyError, OSError):  # no passwd entry for this uid (some containers)
        return f"uid {os.getuid()}" if hasattr(os, "getuid") else "local user"


def github_pr(env: Mapping[str, str]) -> str | None:
    """PR number from the event payload (pull_request events), else from refs/pull/N/merge."""
    path = env.get("GITHUB_EVENT_PATH")
    if path and Path(path).is_file():
        try:
            event = json.loads(Path(path).read_text("utf-8"))
        except (OSError, ValueError):
            event = {}
        number = (event.get("pull_request") or {}).get("number")
        if number:
            return str(number)
    ref = env.get("GITHUB_REF", "")
    if ref.startswith("refs/pull/"):
        return ref.split("/")[2]
    return None
