"""The sandbox the pull request's code runs in: bubblewrap (``bwrap``), a new user, PID, IPC,
UTS and cgroup namespace with a ``/proc`` of its own, the file system read-only but for the
project folder and a private temporary folder.

Stripping credentials from the child's environment protects nothing while the parent that
holds them is one ``/proc/<ppid>/environ`` read away, or while the child can append to the
runner's command files (``GITHUB_ENV``, ``GITHUB_PATH``). In the sandbox the child sees no
process of the host (its PID namespace holds bwrap and itself), cannot ptrace mlops-ci,
inherits no descriptor but its standard ones, and writes nowhere but its project (whose
``.mlops/`` and ``.git/`` stay read-only) and its ``TMPDIR``.

bwrap itself is PID 1 of that namespace and the child may read its ``/proc/1/environ`` and
``/proc/1/cmdline``: so bwrap is started from an empty environment, and the child's own
variables reach it as ``--setenv`` arguments read from a memory file (``--args FD``, which bwrap
closes), never in bwrap's argv (which the host's ``ps`` shows too).

Where bwrap is missing or cannot make namespaces (Ubuntu 24.04 restricts unprivileged user
namespaces through AppArmor unless bwrap's profile is loaded; Docker's default seccomp refuses
them), ``train.isolation: auto`` runs the command as before and says so; ``required`` refuses.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from mlops_ci.errors import InputError
from mlops_ci.records import FOLDER

BUBBLEWRAP = "bubblewrap"
# The namespaces and mounts every sandbox gets (the network stays: training may fetch data).
_BASE = (
    "--unshare-all", "--share-net", "--die-with-parent", "--new-session",
    "--ro-bind", "/", "/", "--dev", "/dev", "--tmpfs", "/dev/shm", "--proc", "/proc",
)  # fmt: skip
_PROBE_SECONDS = 20


@dataclass(frozen=True)
class Isolation:
    """How untrusted code is run: ``mechanism`` (``bubblewrap``) or None, and a line for the
    log, the record and the report saying how, or why it is not isolated."""

    mechanism: str | None
    why: str
    executable: str | None = None  # bwrap's path

    @property
    def line(self) -> str:
        if self.mechanism is None:
            return f"not isolated: {self.why}"
        return f"isolated by {self.mechanism} ({self.why})"


@functools.cache
def probe() -> Isolation:
    """Whether bwrap is here and may make its namespaces (asked once per process)."""
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        return Isolation(None, "bwrap is not installed (Debian/Ubuntu package bubblewrap)")
    try:
        done = subprocess.run(
            [bwrap, *_BASE, "--", "/bin/true"],
            env={},
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=_PROBE_SECONDS,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as err:
        return Isolation(None, f"bwrap did not start: {err}")
    if done.returncode != 0:
        said = (done.stderr.strip().splitlines() or ["no message"])[-1]
        return Isolation(None, f"bwrap cannot make its namespaces here: {said}")
    return Isolation(
        BUBBLEWRAP, "own PID, user and IPC namespaces; read-only but the project", bwrap
    )


def isolation_for(mode: str) -> Isolation:
    """The isolation ``train.isolation`` asks for: ``off`` none, ``auto`` bwrap where it works,
    ``required`` bwrap or an InputError (exit 2) saying why not."""
    if mode == "off":
        return Isolation(None, "train.isolation is off")
    found = probe()
    if found.mechanism is None and mode == "required":
        raise InputError(
            f"mlops.yaml: train.isolation: required, but {found.why}",
            hint="install bubblewrap (apt-get install bubblewrap; on Ubuntu 24.04 load its "
            "AppArmor profile bwrap-userns-restrict), or set train.isolation: auto",
        )
    return found


@dataclass(frozen=True)
class Launch:
    """What to hand to ``subprocess``: the argv, the environment and the descriptors to pass."""

    argv: list[str]
    env: dict[str, str]
    pass_fds: tuple[int, ...] = ()


@contextlib.contextmanager
def launch(
    isolation: Isolation, argv: list[str], env: Mapping[str, str], cwd: Path, project: Path
) -> Iterator[Launch]:
    """``argv`` run in ``cwd`` with ``env``: as it is when ``isolation`` has no mechanism, else
    inside bwrap (the project writable but its ``.mlops/`` and ``.git/``, a private TMPDIR)."""
    if isolation.mechanism is None or isolation.executable is None:
        yield Launch(list(argv), dict(env))
        return
    project = project.resolve()
    with tempfile.TemporaryDirectory(prefix="mlops-sandbox-") as tmp:
        child = {**env, "TMPDIR": tmp}
        args = [*_BASE, "--bind", str(project), str(project), "--bind", tmp, tmp]
        for guarded in (project / FOLDER, project / ".git"):
            if guarded.exists():
                args += ["--ro-bind", str(guarded), str(guarded)]
        args += ["--chdir", str(cwd.resolve())]
        for name, value in child.items():
            args += ["--setenv", name, value]
        fd = os.memfd_create("mlops-sandbox-args", 0)
        try:
            os.write(fd, b"".join(a.encode("utf-8", "surrogateescape") + b"\0" for a in args))
            os.lseek(fd, 0, os.SEEK_SET)
            yield Launch([isolation.executable, "--args", str(fd), "--", *argv], {}, (fd,))
        finally:
            os.close(fd)
