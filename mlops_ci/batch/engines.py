"""Where tasks run: this process and processes forked from it (or its threads), or Dask.

Both run the same ``score_task`` and report each finished task to ``on_done`` as it completes.
The local engine's workers hold one task each (two per worker thread in flight), so memory
stays bounded whatever the input size; Dask schedules on its own workers (a LocalCluster when
no scheduler address is given). Each local worker and each Dask worker loads the model once.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import importlib
import itertools
from collections.abc import Callable, Iterator
from itertools import islice
from typing import Any

from mlops_ci.batch.plan import Task
from mlops_ci.batch.score import Job, TaskResult, close_models, fresh_process, score_task, set_slot
from mlops_ci.errors import InputError, ServiceError
from mlops_ci.extras import install_hint

OnDone = Callable[[TaskResult], None]


def run_local(
    tasks: list[Task], job: Job, workers: int, on_done: OnDone, fork: bool | None = None
) -> None:
    """Score with ``workers`` workers, each with its own model (an onnxruntime session on one
    thread, or a native model's runner): this process and processes forked from it where
    ``fork`` (default: on Linux, ``forked.py``), else threads of this process. One worker
    scores in this thread."""
    queue = iter(tasks)
    workers = min(workers, len(tasks))
    if workers <= 1:
        for each in queue:
            on_done(score_task(each, job))
        return
    from mlops_ci.batch.forked import can_fork, run_forked

    if can_fork() if fork is None else fork:
        run_forked(tasks, job, workers, on_done)
        return
    _threads(queue, job, workers, on_done)


def _threads(queue: Iterator[Task], job: Job, workers: int, on_done: OnDone) -> None:
    """Worker threads of this process. Reading and writing Parquet, the feature arithmetic
    and onnxruntime's ``run`` release the GIL, but a fifth of a task holds it: two threads
    scored ~1.5x faster than one."""
    slots = itertools.count(1)
    with cf.ThreadPoolExecutor(
        workers, "batch-score", initializer=lambda: set_slot(next(slots))
    ) as pool:
        pending = {pool.submit(score_task, task, job) for task in islice(queue, 2 * workers)}
        try:
            while pending:
                done, pending = cf.wait(pending, return_when=cf.FIRST_COMPLETED)
                for future in done:
                    on_done(future.result())
                pending |= {pool.submit(score_task, t, job) for t in islice(queue, len(done))}
        finally:  # a failed task: the others queued are not started
            for future in pending:
                future.cancel()


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
        with contextlib.suppress(Exception):  # a worker gone: its runners went with it
            client.run(close_models)  # each worker's model runners stop with the job
        client.close()
        if cluster is not None:
            cluster.close()


def _local_cluster(distributed: Any, workers: int) -> Any:
    """A LocalCluster of one-thread worker processes forked from a fork server that imported
    ``PRELOAD``: a worker is up in a fraction of the time a spawned one takes. Without a
    dashboard, the workers' sampling profiler (every 10 ms) has no reader."""
    import dask

    from mlops_ci.batch.workers import mp_context, start_method

    method = start_method()
    settings = {
        "distributed.worker.multiprocessing-method": method,
        "distributed.worker.profile.enabled": False,
    }
    with dask.config.set(settings):
        distributed.utils.get_mp_context()  # Dask sets its preload list once; ours replaces it
        mp_context(method, also=["distributed"])
        return distributed.LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            silence_logs=40,
        )
