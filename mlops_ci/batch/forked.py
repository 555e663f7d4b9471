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

Tasks are handed out one at a time from a shared counter, so a process holds one task's rows
at a time (memory bounded whatever the input); a failed task stops every worker taking more.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.connection
import os
import sys
from collections.abc import Callable
from typing import Any

from mlops_ci.batch.plan import Task
from mlops_ci.batch.score import Job, TaskResult, close_models, fresh_process, score_task, set_slot

OnDone = Callable[[TaskResult], None]
_PR_SET_PDEATHSIG = 1  # prctl(2)


def can_fork() -> bool:
    """Linux only: fork is unsafe on macOS (its system libraries) and absent on Windows."""
    return sys.platform.startswith("linux") and "fork" in multiprocessing.get_all_start_methods()


def run_forked(tasks: list[Task], job: Job, workers: int, on_done: OnDone) -> None:
    """Score ``tasks`` with this process (worker 1) and ``workers - 1`` processes forked from
    it (workers 2..), each claiming the next task from a shared counter; every finished task
    is reported to ``on_done`` in this process. A worker's failure is raised here, once the
    others stopped."""
    context = multiprocessing.get_context("fork")
    counter: Any = context.Value("q", 0)
    parent = os.getpid()
    children = []
    try:
        for slot in range(2, workers + 1):
            receive, send = context.Pipe(duplex=False)
            child = context.Process(
                target=_child,
                args=(parent, slot, tasks, job, counter, send),
                name=f"batch-score-{slot}",
                daemon=True,
            )
            child.start()
            send.close()
            children.append((child, receive))
        _parent(tasks, job, counter, [r for _, r in children], on_done)
    except BaseException:
        _stop(counter, len(tasks))
        for child, _ in children:
            if child.is_alive():
                child.terminate()  # an interrupted job: its finished parts are kept
        raise
    finally:
        for child, receive in children:
            child.join(30)
            receive.close()
    failed = [c.name for c, _ in children if c.exitcode]
    if failed:
        raise RuntimeError(f"batch-score worker(s) {', '.join(failed)} exited abnormally")


def _parent(
    tasks: list[Task],
    job: Job,
    counter: Any,
    pipes: list[multiprocessing.connection.Connection],
    on_done: OnDone,
) -> None:
    fresh_process()  # a model loaded before (another job's) stays unused: slot 1 is new
    set_slot(1)
    open_pipes = list(pipes)
    try:
        while (task := _claim(tasks, counter)) is not None:
            on_done(score_task(task, job))
            open_pipes = _receive(open_pipes, on_done, timeout=0)
        while open_pipes:
            open_pipes = _receive(open_pipes, on_done, timeout=None)
    finally:
        set_slot(0)


def _receive(
    pipes: list[multiprocessing.connection.Connection],
    on_done: OnDone,
    timeout: float | None,
) -> list[multiprocessing.connection.Connection]:
    """Report what the children finished; returns the pipes still open."""
    still = list(pipes)
    for ready in multiprocessing.connection.wait(pipes, timeout):
        assert isinstance(ready, multiprocessing.connection.Connection)
        try:
            kind, value = ready.recv()
        except EOFError:  # the child is done (or died: its exit code says which)
            still.remove(ready)
            continue
        if kind == "error":
            raise value
        on_done(value)
    return still


def _child(
    parent: int,
    slot: int,
    tasks: list[Task],
    job: Job,
    counter: Any,
    send: multiprocessing.connection.Connection,
) -> None:
    _die_with(parent)
    fresh_process()  # the parent's models, if any, are its own
    set_slot(slot)
    try:
        while (task := _claim(tasks, counter)) is not None:
            send.send(("done", score_task(task, job)))
    except BaseException as err:
        _stop(counter, len(tasks))
        try:
            send.send(("error", err))
        except Exception:  # an exception that does not pickle
            send.send(("error", RuntimeError(f"{type(err).__name__}: {err}")))
    finally:
        close_models()  # this worker's model runner, if any
        send.close()
        os._exit(0)


def _die_with(parent: int) -> None:
    """A killed job's workers go with it (else one would go on writing parts beside the run
    that resumes the job): the kernel kills this child when the thread that forked it ends."""
    import ctypes
    import signal

    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # it died before the request
        os._exit(1)


def _claim(tasks: list[Task], counter: Any) -> Task | None:
    with counter.get_lock():
        index = int(counter.value)
        if index >= len(tasks):
            return None
        counter.value = index + 1
    return tasks[index]


def _stop(counter: Any, total: int) -> None:
    with counter.get_lock():
        counter.value = total
