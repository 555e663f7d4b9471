"""Where tasks run: worker processes on this machine, or a Dask cluster.

Both run the same ``score_task`` and report each finished task to ``on_done`` as it completes.
The local engine keeps at most two tasks per worker in flight, so memory stays bounded whatever
the input size; Dask schedules on its own workers (a LocalCluster when no scheduler address is
given). Each process loads the model once.
"""

from __future__ import annotations

import concurrent.futures as cf
import importlib
import importlib.util
import multiprocessing
import sys
from collections.abc import Callable
from itertools import islice
from typing import Any

from mlops_ci.batch.plan import Task
from mlops_ci.batch.score import Job, TaskResult, fresh_process, score_task
from mlops_ci.errors import InputError, ServiceError
from mlops_ci.extras import install_hint

OnDone = Callable[[TaskResult], None]


def start_method() -> str:
    """``forkserver`` on Linux: workers fork from a clean server process that imported
    ``PRELOAD`` once, so each is ready in milliseconds, yet none inherits this process's
    threads. Forking this process itself is not safe: by the time a job starts it runs several
    (pyarrow's pool, an onnxruntime session's, a Dask event loop, a progress bar; `batch-score`
    counts 5), and a child forked while one of them holds a lock, or that tears down a pool
    whose threads it does not have, can wait forever (the likely cause of a Dask test that
    once hung 17 minutes). The cost is the server's start, a few tenths of a second per job.
    ``spawn`` elsewhere (fork is unsafe on macOS, absent on Windows)."""
    return "forkserver" if sys.platform.startswith("linux") else "spawn"


# Imported once by the fork server, before it forks any worker (Dask's workers too: one server
# per process, started by whichever engine runs first).
PRELOAD = ["numpy", "pyarrow", "pyarrow.parquet", "onnxruntime", "mlops_ci.batch.score"]


def mp_context(method: str | None = None) -> multiprocessing.context.BaseContext:
    context = multiprocessing.get_context(method or start_method())
    if isinstance(context, multiprocessing.context.ForkServerContext):
        dask = importlib.util.find_spec("distributed") is not None
        context.set_forkserver_preload([*PRELOAD, *(["distributed"] if dask else [])])
    return context


def run_local(tasks: list[Task], job: Job, processes: int, on_done: OnDone) -> None:
    """Score in this process when one is asked for, else in ``processes`` workers."""
    workers = min(processes, len(tasks))
    if workers <= 1:
        for task in tasks:
            on_done(score_task(task, job))
        return
    context = mp_context()
    queue = iter(tasks)
    with cf.ProcessPoolExecutor(workers, mp_context=context, initializer=fresh_process) as pool:
        pending = {pool.submit(score_task, task, job) for task in islice(queue, 2 * workers)}
        while pending:
            done, pending = cf.wait(pending, return_when=cf.FIRST_COMPLETED)
            for future in done:
                on_done(future.result())
            pending |= {pool.submit(score_task, task, job) for task in islice(queue, len(done))}


def run_dask(
    tasks: list[Task], job: Job, scheduler: str | None, workers: int, on_done: OnDone
) -> list[str]:
    """Run on Dask; returns the worker addresses used."""
    try:  # imported as Any: distributed's own annotations are partial
        distributed: Any = importlib.import_module("distributed")
    except ImportError:
        raise InputError(
            "--engine dask needs dask.distributed", hint=install_hint("dask")
        ) from None
    cluster = None
    try:
        if scheduler:
            client = distributed.Client(scheduler, timeout=30)
        else:
            cluster = _local_cluster(distributed, workers)
            client = distributed.Client(cluster)
            client.run(fresh_process)
    except OSError as err:
        raise ServiceError(f"Dask scheduler {scheduler}: cannot connect: {err}") from None
    try:
        addresses = sorted(client.scheduler_info()["workers"])
        futures = client.map(score_task, tasks, job=job, pure=False)
        for future in distributed.as_completed(futures):
            on_done(future.result())
        return addresses
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def _local_cluster(distributed: Any, workers: int) -> Any:
    """A LocalCluster of one-thread worker processes forked from a fork server that imported
    ``PRELOAD``: a worker is up in a fraction of the time a spawned one takes. Without a
    dashboard, the workers' sampling profiler (every 10 ms) has no reader."""
    import dask

    method = start_method()
    settings = {
        "distributed.worker.multiprocessing-method": method,
        "distributed.worker.profile.enabled": False,
    }
    with dask.config.set(settings):
        distributed.utils.get_mp_context()  # Dask sets its preload list once; ours replaces it
        mp_context(method)
        return distributed.LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            silence_logs=40,
        )
