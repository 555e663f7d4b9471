"""The user's training command (or a pipeline stage's) in a child process: the environment
it gets (none of the CI's, the registry's or mlops-ci's credentials: it is the pull request's
code), the sandbox it runs in (``sandbox``: train.isolation), its log, its time limit, and one
line when it fails. It runs under a supervisor (``sandbox.supervised``) in a process group of
its own, which ends with it, on a timeout, when mlops-ci is told to end, and when mlops-ci dies
(even by SIGKILL): nothing of it outlives the train."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

from mlops_ci.config.types import Config, Scalar

# SECRET_VARIABLES (the registry's, the CI's and mlops-ci's credentials) and URI_VARIABLES
# (where runs go) are shared with what masks printed text.
from mlops_ci.credentials import SECRET_VARIABLES, URI_VARIABLES, safe_url
from mlops_ci.errors import InputError, TrainingError
from mlops_ci.sandbox import isolation_for, launch, planted_repository, supervised

PYTHON = "{python}"
_LOG_TAIL_LINES = 5
_END_GRACE_S = 5.0  # how long the supervisor has to end the command's group when told to


# Every variable with these prefixes: action inputs (act-based runners such as Gitea's and
# Forgejo's give composite steps INPUT_*, a github-token input among them) and Azure's secret
# task variables.
SECRET_PREFIXES = ("INPUT_", "SECRET_")


def secret_variables(config: Config) -> list[str]:
    """Every variable the training command does not get: the fixed list, the admin token's
    variable and each webhook's signing secret (``notify.webhooks[].secret_env``)."""
    named = [config.serve.admin_token_env]
    named += [hook.secret_env for hook in config.notify.webhooks if hook.secret_env]
    return sorted({*SECRET_VARIABLES, *(name.upper() for name in named)})


def command_environment(env: Mapping[str, str], secret: list[str]) -> dict[str, str]:
    """The environment of the training command: this one without the secret variables and
    the ``SECRET_PREFIXES`` ones, and the tracking URIs without their credentials."""
    hidden = set(secret)
    out = {
        k: v
        for k, v in env.items()
        if k.upper() not in hidden and not k.upper().startswith(SECRET_PREFIXES)
    }
    for name in URI_VARIABLES:
        if out.get(name):
            out[name] = safe_url(out[name], userinfo="")
    return out


def run_command(
    config: Config,
    command: str,
    params: Mapping[str, Scalar],
    env: dict[str, str],
    log_path: Path,
    shell: bool = False,
    cwd: Path | None = None,
    what: str = "train.command",
) -> Path:
    """Run the command (without a shell unless ``shell``: a DVC stage's cmd is shell text);
    its output goes to a log that becomes an artifact."""
    if shell:
        argv = ["/bin/sh", "-c", command.replace(PYTHON, shlex.quote(sys.executable))]
    else:
        try:
            argv = shlex.split(command)
        except ValueError as err:
            raise InputError(f"mlops.yaml: {what}: cannot be split into words: {err}") from None
        # {python} is the interpreter mlops-ci runs in (a pipx or CI venv), whatever is on PATH.
        argv = [sys.executable if word == PYTHON else word for word in argv]
    env = command_environment(env, secret_variables(config))
    env["MLOPS_PARAMS"] = json.dumps(params, sort_keys=True)
    env.update({f"MLOPS_PARAM_{k.upper()}": str(v) for k, v in params.items()})
    workdir = cwd or config.root
    if not _findable(argv[0], env, workdir):
        raise TrainingError(
            f"mlops.yaml: {what}: program '{argv[0]}' not found",
            hint="check the command runs in the folder of mlops.yaml",
        )
    isolation = isolation_for(config.train.isolation)
    had_repository = (config.root / ".git").exists()
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with (
        log_path.open("w", encoding="utf-8") as log,
        launch(isolation, argv, env, workdir, config.root) as run,
    ):
        process = subprocess.Popen(
            supervised(run.argv),
            cwd=workdir,
            env=run.env,
            pass_fds=run.pass_fds,
            stdin=subprocess.DEVNULL if isolation.mechanism else None,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            returncode = process.wait(timeout=config.train.timeout_minutes * 60)
        except subprocess.TimeoutExpired:
            raise TrainingError(
                f"mlops.yaml: {what}: still running after "
                f"{config.train.timeout_minutes:g} minutes (train.timeout_minutes); stopped"
            ) from None
        finally:  # a timeout, or this process told to end (SIGTERM, SIGINT): its group ends
            end_command(process)
    if isolation.mechanism and planted_repository(config.root, had_repository):
        planted = config.root / ".git"
        if planted.is_dir() and not planted.is_symlink():
            shutil.rmtree(planted, ignore_errors=True)
        else:
            planted.unlink(missing_ok=True)
        raise TrainingError(
            f"mlops.yaml: {what} made a git repository (.git) in {config.root}; removed it",
            hint="git runs a repository's hooks and fsmonitor: a training command may not make one",
        )
    if returncode != 0:
        tail = log_path.read_text("utf-8", errors="replace").strip().splitlines()[-_LOG_TAIL_LINES:]
        last = tail[-1] if tail else "(no output)"
        raise TrainingError(
            f"mlops.yaml: {what} '{command}' exited with code {returncode}: {last}",
            hint=f"full log: {log_path}",
        )
    return log_path


def end_command(process: subprocess.Popen[bytes]) -> None:
    """The command's supervisor, told to end it with its whole process group (SIGTERM: it
    kills the group with SIGKILL), then reaped; killed itself if it does not end in time."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(_END_GRACE_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _findable(program: str, env: Mapping[str, str], cwd: Path) -> bool:
    """Whether ``program`` names something to run, as execvp would look for it (in the sandbox
    bwrap, not Python, would fail to find it, with a message of its own)."""
    if os.sep in program:
        return os.access(cwd / program, os.X_OK)
    return shutil.which(program, path=env.get("PATH", os.defpath)) is not None
