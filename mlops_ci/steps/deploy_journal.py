"""The deploy journal: what a deploy of one environment is doing, written before it does it.

A deploy takes an exclusive ``flock`` on ``.mlops/deploy/ENV/deploy.lock`` for its whole life
(its pid written in it) and writes ``journal.json`` beside it: state ``running``, the version
going in, the version it goes back to, the rollout's plan, and before and after each traffic
change the split it sets. Its outcome (serving, ab, rolled_back, ...) closes the journal.

The lock, not a pid, tells a live deploy from a dead one: the kernel drops it with the process,
however it ended, and a reused pid cannot hold it. So a journal in state ``running`` whose
lock is free was left by a deploy that died (``kill -9``, a lost runner): the next verb that
takes the lock settles it (``deploy_settle``). A lock that is held means a deploy is running:
``deploy``, ``rollback`` and ``undeploy`` refuse (exit 2, naming its pid); ``status`` says so.

While traffic moves, SIGTERM and SIGINT raise ``Interrupted`` in the deploy (``interruptible``),
which puts the split back and records it before exiting 143 or 130; while the outcome is being
recorded they wait (``Signals.deferred``) so the records are never half-written.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from mlops_ci.errors import InputError, MlopsError
from mlops_ci.records import JobFolder, read_object, try_lock, write_json_atomic
from mlops_ci.steps.gates import now_iso

RUNNING = "running"
PLANNING = "planning"  # the journal's phase until the deploy first touches the endpoint


class Interrupted(MlopsError):
    """SIGTERM or SIGINT ended a verb; its exit code is the shell's, 128 + the signal."""

    def __init__(self, signum: int, message: str | None = None) -> None:
        self.signal = signal.Signals(signum).name
        super().__init__(message or f"terminated by {self.signal}")
        self.exit_code = 128 + signum


@dataclass(frozen=True)
class EnvLock:
    """The environment's deploy lock, held by this process (released when the fd closes)."""

    path: Path
    fd: int


def lock_path(root: Path, env: str) -> Path:
    return JobFolder(root).deploy_state(env) / "deploy.lock"


def holder(root: Path, env: str) -> str:
    """The pid written in the lock file by whoever holds it ('unknown' while it writes it)."""
    try:
        return lock_path(root, env).read_text().strip() or "unknown"
    except OSError:
        return "unknown"


def _take(root: Path, env: str) -> EnvLock | None:
    path = lock_path(root, env)
    fd = try_lock(path, f"{os.getpid()}\n")
    return None if fd is None else EnvLock(path, fd)


@contextmanager
def locked(root: Path, env: str, verb: str) -> Iterator[EnvLock]:
    """Hold ``env``'s deploy lock for the block; refused (exit 2) while a deploy holds it."""
    lock = _take(root, env)
    if lock is None:
        running = Journal(root, env).read() or {}
        what = f" of v{running['version']}" if running.get("version") else ""
        raise InputError(
            f"{verb} {env} refused: a deploy{what} to {env} is running "
            f"(pid {holder(root, env)}, lock {lock_path(root, env)})",
            hint="wait for it to finish (or stop it), then run this again",
        )
    try:
        yield lock
    finally:
        os.close(lock.fd)


@contextmanager
def maybe_locked(root: Path, env: str) -> Iterator[EnvLock | None]:
    """``env``'s deploy lock for the block, or None when a deploy holds it (``status``)."""
    lock = _take(root, env)
    try:
        yield lock
    finally:
        if lock is not None:
            os.close(lock.fd)


class Journal:
    """``.mlops/deploy/ENV/journal.json``: one deploy's intent, progress and outcome."""

    def __init__(self, root: Path, env: str) -> None:
        self.path = JobFolder(root).deploy_state(env) / "journal.json"
        self.data: dict[str, Any] = {}

    def read(self) -> dict[str, Any] | None:
        return read_object(self.path)

    def dead(self) -> dict[str, Any] | None:
        """The record of a deploy that died running (call with the lock held), else None."""
        found = self.read()
        return found if found is not None and found.get("state") == RUNNING else None

    def begin(self, **fields: Any) -> None:
        self.data = {
            **fields,
            "state": RUNNING,
            "pid": os.getpid(),
            "started_at": now_iso(),
            "phase": PLANNING,
            "step": None,
        }
        self._write()

    def update(self, **fields: Any) -> None:
        self.data.update(fields)
        self._write()

    def close(self, state: str, **fields: Any) -> None:
        """The outcome: the journal is no longer ``running``."""
        self.update(**fields, state=state, phase="done", ended_at=now_iso())

    def settled(self, dead: dict[str, Any], resolved: str, by: str) -> None:
        """Close a dead deploy's journal with what the verb that found it did."""
        self.data = dict(dead)
        self.close("killed", resolved=resolved, settled_by=by, settled_pid=os.getpid())

    def _write(self) -> None:
        write_json_atomic(self.path, {**self.data, "updated_at": now_iso()})


class Signals:
    """SIGTERM and SIGINT as ``Interrupted`` in the main thread; ``deferred`` holds them back
    (they are raised by ``raise_pending`` after the block) while records are written."""

    def __init__(self) -> None:
        self.caught: int | None = None
        self._deferring = 0

    def handle(self, signum: int, frame: FrameType | None) -> None:
        if self.caught is None:
            self.caught = signum
        if not self._deferring:
            raise Interrupted(signum)

    @contextmanager
    def deferred(self) -> Iterator[None]:
        self.hold()
        try:
            yield
        finally:
            self.release()

    def hold(self) -> None:
        """Hold signals back from now (``release`` ends it): where a ``with`` would leave a
        gap of a few instructions between a call returning and the block starting."""
        self._deferring += 1

    def release(self) -> None:
        self._deferring -= 1

    def interrupted(self) -> Interrupted | None:
        """The signal caught, as an error (a library may have swallowed the one raised)."""
        return None if self.caught is None else Interrupted(self.caught)

    def raise_pending(self, message: str) -> None:
        if self.caught is not None:
            raise Interrupted(self.caught, message)


@contextmanager
def interruptible() -> Iterator[Signals]:
    """SIGTERM and SIGINT raise ``Interrupted`` during the block (the main thread's handlers
    are put back after it); elsewhere than the main thread nothing changes."""
    import threading

    signals = Signals()
    if threading.current_thread() is not threading.main_thread():
        yield signals
        return
    kept = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    for number in kept:
        signal.signal(number, signals.handle)
    try:
        yield signals
    finally:
        for number, handler in kept.items():
            signal.signal(number, handler)
