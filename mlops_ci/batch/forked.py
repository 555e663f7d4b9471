"""The local engine's workers as processes forked from this one, after its imports.

A worker forked here starts in about a millisecond: it inherits numpy, pyarrow, onnxruntime
and mlops-ci already imported (copy-on-write), where a spawned one imported them again
(~0.5 s of a core, more than a second worker won on 300,000 rows). And no GIL is shared: two
threads of one process scored 1,000,000 rows only ~1.5x faster than one, as a fifth of a
task's work (onnxruntime's string labels as Python strings, the label text, the Arrow
columns) holds it.

Safe to fork here because no model is loaded in this process by the local engine before its
workers start (each worker, this process included, loads its own: an onnxruntime session on
one thread, or a native model's own runner, after the fork), and Arrow's thread pools and
jemalloc re-initialise themselves in a child (their at-fork handlers). A child runs only
``score_task``: no logging, no printing, and it leaves by ``os._exit``.

Tasks are claimed one at a time (``Claims``), so a process holds one task's rows at a time
(memory bounded whatever the input); a failed task stops every worker taking more. Each worker
starts on its own share of the task list and goes on in order, taking from the end of another's
share once its own is done: the tasks of one Parquet row group mostly fall to one worker, which
reads the group once (handed out in turn, each of two workers read every row group).
A child's error comes back as plain values (its type's name, message, hint, traceback: pickle
cannot rebuild an exception whose ``__init__`` takes other arguments, ``Terminated``'s say) and
is raised here as the error it was; a child that dies without a word (SIGKILL, the OOM killer)
stops the others at once, as an error does.
"""

from __future__ import annotations

import builtins
import multiprocessing
import multiprocessing.connection
import os
import signal
import sys
import traceback
from collections.abc import Callable
from typing import Any

import numpy as np

from mlops_ci import errors
from mlops_ci.batch.plan import Task
from mlops_ci.batch.score import Job, TaskResult, close_models, fresh_process, score_task, set_slot
from mlops_ci.errors import ConfigError, MlopsError, Terminated

OnDone = Callable[[TaskResult], None]
_PR_SET_PDEATHSIG = 1  # prctl(2)


def can_fork() -> bool:
    """Linux only: fork is unsafe on macOS (its system libraries) and absent on Windows."""
    return sys.platform.startswith("linux") and "fork" in multiprocessing.get_all_start_methods()


def run_forked(tasks: list[Task], job: Job, workers: int, on_done: OnDone) -> None:
    """Score ``tasks`` with this process (worker 1) and ``workers - 1`` processes forked from
    it (workers 2..), each claiming its next task (``Claims``); every finished task
    is reported to ``on_done`` in this process. A worker's failure is raised here (as the
    error it was: ``_rebuilt``), and a worker that died (SIGKILL, the OOM killer) stops the
    others at once, their finished parts kept for the next run."""
    context = multiprocessing.get_context("fork")
    claims = Claims(context, len(tasks), workers)
    parent = os.getpid()
    children: dict[multiprocessing.connection.Connection, Any] = {}
    try:
        for slot in range(2, workers + 1):
            receive, send = context.Pipe(duplex=False)
            child = context.Process(
                target=_child,
                args=(parent, slot, tasks, job, claims, send),
                name=f"batch-score-{slot}",
                daemon=True,
            )
            child.start()
            send.close()
            children[receive] = child
        _parent(tasks, job, claims, children, on_done)
    except BaseException:
        claims.stop()
        for child in children.values():
            if child.is_alive():
                child.terminate()  # an interrupted job: its finished parts are kept
        raise
    finally:
        for receive, child in children.items():
            child.join(30)
            receive.close()


def _parent(
    tasks: list[Task],
    job: Job,
    claims: Claims,
    children: dict[multiprocessing.connection.Connection, Any],
    on_done: OnDone,
) -> None:
    fresh_process()  # a model loaded before (another job's) stays unused: slot 1 is new
    set_slot(1)
    running = dict(children)
    try:
        at = claims.start(1)
        while (index := claims.claim(at)) is not None:
            on_done(score_task(tasks[index], job))
            at = index + 1
            running = _receive(running, on_done, timeout=0)
        while running:
            running = _receive(running, on_done, timeout=None)
    finally:
        set_slot(0)


def _receive(
    children: dict[multiprocessing.connection.Connection, Any],
    on_done: OnDone,
    timeout: float | None,
) -> dict[multiprocessing.connection.Connection, Any]:
    """Report what the children finished; returns those still running. A child's error is
    raised here; a child gone without a word (killed) raises ``WorkerDied``."""
    still = dict(children)
    for ready in multiprocessing.connection.wait(list(children), timeout):
        assert isinstance(ready, multiprocessing.connection.Connection)
        try:
            kind, value = ready.recv()
        except EOFError:  # the child is done, or died: its exit code says which
            child = still.pop(ready)
            child.join(10)  # its pipe closes just before it exits
            if child.exitcode != 0:
                ended = _ended(child.exitcode)
                raise WorkerDied(f"batch-score worker {child.name} {ended}") from None
            continue
        if kind == "error":
            raise _rebuilt(value)
        on_done(value)
    return still


class WorkerDied(RuntimeError):
    """A forked worker ended without finishing (killed, or out of memory)."""


class WorkerError(RuntimeError):
    """A forked worker's error that is neither mlops-ci's nor Python's own: its type's name
    and message (the object itself may not survive pickling)."""


class _RemoteTraceback(Exception):
    """The worker's traceback, as the cause of the error raised here (``--debug`` shows it)."""

    def __str__(self) -> str:
        return str(self.args[0])


Described = tuple[str, str, str | None, str, int | None]  # (type, message, hint, trace, signum)


def _described(err: BaseException) -> Described:
    """What the parent needs to raise ``err`` again, in plain values: the type as the name of
    its first mlops-ci (or Python) class, its message, hint, traceback and signal."""
    known = next(c for c in type(err).__mro__ if c.__module__ in ("mlops_ci.errors", "builtins"))
    name = known.__name__ if known is type(err) or known.__module__ != "builtins" else ""
    trace = "".join(traceback.format_exception(type(err), err, err.__traceback__))
    message = str(err) if name else f"{type(err).__name__}: {err}"
    return (
        name or "WorkerError",
        message,
        getattr(err, "hint", None),
        trace,
        getattr(err, "signum", None),
    )


def _rebuilt(described: Described) -> BaseException:
    """The worker's error as this process raises it: an mlops-ci error as its class (exit
    code and one-line message as with one worker), Terminated with its signal, a Python
    exception as its type, anything else as ``WorkerError``; the traceback as its cause."""
    name, message, hint, trace, signum = described
    err: BaseException
    if name == "Terminated" and signum is not None:
        err = Terminated(signum)
    elif name == "ConfigError":
        err = ConfigError(message.split("\n"), hint)
    elif isinstance(found := getattr(errors, name, None), type) and issubclass(found, MlopsError):
        err = found(message, hint)
    elif name == "WorkerError":
        err = WorkerError(message)
    else:
        try:
            err = getattr(builtins, name)(message)
        except Exception:  # a builtin that takes other arguments
            err = WorkerError(f"{name}: {message}")
    err.__cause__ = _RemoteTraceback(trace)
    return err


def _ended(code: int | None) -> str:
    if code is not None and code < 0:
        return f"was killed by {signal.Signals(-code).name}"
    return "did not end" if code is None else f"exited with code {code}"


def _child(
    parent: int,
    slot: int,
    tasks: list[Task],
    job: Job,
    claims: Claims,
    send: multiprocessing.connection.Connection,
) -> None:
    _die_with(parent)
    fresh_process()  # the parent's models, if any, are its own
    set_slot(slot)
    code = 0
    try:
        at = claims.start(slot)
        while (index := claims.claim(at)) is not None:
            send.send(("done", score_task(tasks[index], job)))
            at = index + 1
    except BaseException as err:
        claims.stop()
        try:
            send.send(("error", _described(err)))
        except BaseException:  # the parent is gone
            code = 1
    finally:
        close_models()  # this worker's model runner, if any
        send.close()
        os._exit(code)


def _die_with(parent: int) -> None:
    """A killed job's workers go with it (else one would go on writing parts beside the run
    that resumes the job): the kernel kills this child when the thread that forked it ends."""
    import ctypes

    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # it died before the request
        os._exit(1)


class Claims:
    """Which tasks are taken, in memory shared by the workers. Worker ``slot`` (1..) of W
    starts at task ``(slot - 1) * n // W`` and goes on to the next; where that one is taken,
    it takes the last free task of the longest free run (from the end of another's share, so
    the two meet in its middle). ``stop``: no task is handed out any more."""

    def __init__(self, context: Any, tasks: int, workers: int) -> None:
        self.tasks, self.workers = tasks, workers
        self.lock = context.Lock()
        self.taken = context.RawArray("b", tasks)
        self.stopped = context.RawValue("b", 0)

    def start(self, slot: int) -> int:
        return (slot - 1) * self.tasks // self.workers

    def claim(self, at: int) -> int | None:
        """The task to score next, ``at`` where it is free; None once all are taken."""
        with self.lock:
            if self.stopped.value:
                return None
            if not (0 <= at < self.tasks and not self.taken[at]):
                at = self._stolen()
            if at >= 0:
                self.taken[at] = 1
            return at if at >= 0 else None

    def stop(self) -> None:
        with self.lock:
            self.stopped.value = 1

    def _stolen(self) -> int:
        """The last task of the longest run of free tasks (-1: none is free)."""
        free = np.frombuffer(self.taken, np.int8) == 0
        if not free.any():
            return -1
        edges = np.flatnonzero(np.diff(np.concatenate(([False], free, [False])).astype(np.int8)))
        starts, ends = edges[::2], edges[1::2]  # each free run is tasks[start:end]
        return int(ends[np.argmax(ends - starts)] - 1)
