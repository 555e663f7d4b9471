"""How worker processes start: from a fork server that imported the scoring stack once.

Used by the Dask engine's LocalCluster (the local engine forks its workers from the command's
own process once its imports are done, before it loads any model: ``forked.py``). Standard
library only, so a caller can start the server before it imports anything heavy.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.forkserver
import sys
from collections.abc import Iterable

# Imported once by the fork server, before it forks any worker (Dask's workers too: one server
# per process, started by whichever engine runs first). pandas because pyarrow's to_numpy
# imports it: a worker spent 0.26 s of its first task on that import.
PRELOAD = [
    "numpy",
    "pandas",
    "pyarrow",
    "pyarrow.parquet",
    "onnxruntime",
    "mlops_ci.batch.score",
    "mlops_ci.serve.model",  # what a worker loads the model with (23 ms of its first task)
]


def start_method() -> str:
    """``forkserver`` on Linux: workers fork from a clean server process that imported
    ``PRELOAD`` once, so each is ready in milliseconds, yet none inherits this process's
    threads. Forking this process itself is not safe: by the time a job starts it runs several
    (pyarrow's pool, an onnxruntime session's, a Dask event loop, a progress bar; `batch-score`
    counts 5), and a child forked while one of them holds a lock, or that tears down a pool
    whose threads it does not have, can wait forever (the likely cause of a Dask test that
    once hung 17 minutes). ``spawn`` elsewhere (fork is unsafe on macOS, absent on Windows)."""
    return "forkserver" if sys.platform.startswith("linux") else "spawn"


def mp_context(
    method: str | None = None, also: Iterable[str] = ()
) -> multiprocessing.context.BaseContext:
    """The context workers start from. ``also``: modules the fork server imports besides
    ``PRELOAD`` (Dask's ``distributed`` for its workers, not for the local engine's: 0.26 s of
    the server's start); it counts only until the server starts, one per process."""
    context = multiprocessing.get_context(method or start_method())
    if isinstance(context, multiprocessing.context.ForkServerContext):
        context.set_forkserver_preload([*PRELOAD, *also])
    return context


def start_fork_server(also: Iterable[str] = ()) -> None:
    """Start the fork server now, in the background (no-op where workers are spawned).

    ``also`` names what the calling program's main module imports: multiprocessing runs a
    script's main module again in every worker it starts (``mlops-ci``'s console script
    imports ``mlops_ci.cli``), which costs nothing once the server has imported it."""
    if mp_context(also=also).get_start_method() == "forkserver":
        multiprocessing.forkserver.ensure_running()
