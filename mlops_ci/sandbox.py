"""The sandbox the pull request's code runs in: bubblewrap (``bwrap``), a new user, PID, IPC,
UTS and cgroup namespace with a ``/proc`` of its own and no capability, the file system
read-only but for the project folder and a private temporary folder.

Stripping credentials from the child's environment protects nothing while the parent that
holds them is one ``/proc/<ppid>/environ`` read away, or while the child can append to the
runner's command files (``GITHUB_ENV``, ``GITHUB_PATH``). In the sandbox the child sees no
process of the host (its PID namespace holds bwrap and itself), cannot ptrace mlops-ci,
inherits no descriptor but its standard ones, and writes nowhere but its project (whose
``.mlops/`` and ``.git/`` stay read-only) and its ``TMPDIR``.

Run as root, bwrap keeps every capability inside its user namespace, and a mount it made there
can be remounted writable: so every capability is dropped (``--cap-drop ALL``) and no further
user namespace may be made (``--disable-userns``). A read-only mount does not stop
``connect()`` on a unix socket: ``/tmp``, ``/run`` and ``/var/tmp`` are empty in the sandbox
(the Docker or podman socket, an ssh agent), but for what the command needs there (its project,
the interpreter, mlops-ci's own folders), bound back read-only. A virtualenv, ``.git/`` or
``.mlops/`` inside the project stays read-only: the next mlops-ci or git run would run what
the command planted there.

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
import sys
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from mlops_ci.errors import InputError
from mlops_ci.records import FOLDER

BUBBLEWRAP = "bubblewrap"
# The namespaces and mounts every sandbox gets (the network stays: training may fetch data).
_BASE = (
    "--unshare-user", "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try",
    "--disable-userns", "--cap-drop", "ALL", "--die-with-parent", "--new-session",
    "--ro-bind", "/", "/", "--dev", "/dev", "--tmpfs", "/dev/shm", "--proc", "/proc",
)  # fmt: skip
# Emptied in the sandbox: where sockets of the host live (and other users' files).
_EMPTIED = ("/tmp", "/run", "/var/tmp")
_PROBE_SECONDS = 20
# The environment of a process of mlops-ci's that needs none of its secrets (the model
# runner's child, the memory probe): no credential, no MLflow or cloud variable.
ALLOWED_VARIABLES = (
    "PATH", "HOME", "LANG", "LC_ALL", "LC_CTYPE", "TZ",
    "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
)  # fmt: skip


# The supervisor of the training command (``supervised``): a tiny single-threaded Python
# process between mlops-ci and the command. It starts the command in a session (so a process
# group) of its own, and kills that whole group when the command ends (what it left running in
# the background), when it is told to end (SIGTERM, SIGINT, SIGHUP: mlops-ci's timeout, or
# mlops-ci itself ended by a signal) and when mlops-ci dies, even by SIGKILL: the kernel sends it
# SIGTERM then (PR_SET_PDEATHSIG). Its exit status is the command's; a command killed by a
# signal makes it die by the same signal. It imports nothing but the standard library's core.
_SUPERVISOR = r"""
import ctypes, os, signal, sys
parent, argv = int(sys.argv[1]), sys.argv[3:]
ENDS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
child = 0
def end(signum, frame):
    if child > 0:
        for kill in (os.kill, os.killpg):
            try:
                kill(child, signal.SIGKILL)
            except OSError:
                pass
    os._exit(128 + signum)
for s in ENDS:
    signal.signal(s, end)
signal.pthread_sigmask(signal.SIG_BLOCK, ENDS)
ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGTERM), 0, 0, 0)  # PR_SET_PDEATHSIG
if os.getppid() != parent:
    os._exit(128 + signal.SIGTERM)
child = os.fork()
if child == 0:
    os.setsid()
    for s in ENDS:
        signal.signal(s, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, ENDS)
    try:
        os.execvp(argv[0], argv)
    except OSError as err:
        os.write(2, ("%s: %s\n" % (argv[0], err.strerror)).encode())
    os._exit(127)
signal.pthread_sigmask(signal.SIG_UNBLOCK, ENDS)
os.waitid(os.P_PID, child, os.WEXITED | os.WNOWAIT)
try:
    os.killpg(child, signal.SIGKILL)
except OSError:
    pass
code = os.waitstatus_to_exitcode(os.waitpid(child, 0)[1])
if code < 0:
    signal.signal(-code, signal.SIG_DFL)
    os.kill(os.getpid(), -code)
    code = 128 - code
os._exit(code)
"""


def supervised(argv: list[str]) -> list[str]:
    """``argv`` under the supervisor (see ``_SUPERVISOR``): its process group ends with it,
    with a SIGTERM to the supervisor, and with this process, however this process dies. Call
    it from the thread that starts the process (the kernel ties PR_SET_PDEATHSIG to it)."""
    return [sys.executable, "-I", "-S", "-c", _SUPERVISOR, str(os.getpid()), "--", *argv]


def python_argv() -> list[str]:
    """This interpreter, started so that neither ``PYTHON*`` variables nor the current folder
    decide what it imports (``-I``; ``-E`` where mlops-ci is installed in the user's site,
    which ``-I`` leaves out: then the caller's cwd must be a folder of its own)."""
    import site

    import mlops_ci

    user = site.getusersitepackages() if site.ENABLE_USER_SITE else None
    here = Path(mlops_ci.__file__).resolve()
    if user and here.is_relative_to(Path(user).resolve()):
        return [sys.executable, "-E"]
    return [sys.executable, "-I"]


def allowed_environment() -> dict[str, str]:
    """:data:`ALLOWED_VARIABLES` of this process's environment (PATH at least)."""
    env = {k: os.environ[k] for k in ALLOWED_VARIABLES if k in os.environ}
    env.setdefault("PATH", os.defpath)
    return env


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
    (project / FOLDER).mkdir(exist_ok=True)  # read-only below: the command cannot plant it
    with tempfile.TemporaryDirectory(prefix="mlops-sandbox-") as tmp:
        child = {**env, "TMPDIR": tmp}
        folders = _folders(env)
        args = [*_BASE]
        for emptied in _EMPTIED:
            args += ["--tmpfs", emptied]
        for needed in _outermost(folders):
            if any(needed.is_relative_to(emptied) for emptied in _EMPTIED):
                args += ["--ro-bind", str(needed), str(needed)]
        args += ["--bind", str(project), str(project), "--bind", tmp, tmp]
        for guarded in _guarded(project, folders):
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


def _outermost(folders: list[Path]) -> list[Path]:
    """The outermost of ``folders``: one bind holds what lies under it."""
    return [f for f in folders if not any(other in f.parents for other in folders)]


def _folders(env: Mapping[str, str]) -> list[Path]:
    """What the command needs to read wherever it lives: the interpreter and its prefixes,
    every import path (mlops-ci's own folder among them) and the folders on PATH."""
    import mlops_ci

    found = [Path(sys.executable).parent, Path(sys.prefix), Path(sys.base_prefix)]
    found += [Path(entry) for entry in sys.path if entry]
    found += [Path(mlops_ci.__file__).parent]
    found += [Path(entry) for entry in env.get("PATH", "").split(os.pathsep) if entry]
    found = [path for path in found if path.is_absolute() and path.is_dir()]
    return sorted({*found, *(path.resolve() for path in found)})


def _guarded(project: Path, folders: list[Path]) -> list[Path]:
    """What stays read-only inside the writable project: its records, its git repository and
    any interpreter, import path or PATH folder that lives in it (a virtualenv in the
    project: the next mlops-ci run would import what the command planted); ``folders`` are
    ``_folders``."""
    inside = [p for p in folders if p != project and p.is_relative_to(project)]
    return sorted({project / FOLDER, *(p for p in [project / ".git"] if p.exists()), *inside})


def planted_repository(project: Path, existed: bool) -> bool:
    """Whether the command made a ``.git`` in the project where there was none: git would run
    its hooks and ``core.fsmonitor`` in the next mlops-ci or git call there."""
    return not existed and (project / ".git").exists()
