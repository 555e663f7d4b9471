"""Where tasks run: worker processes on this machine, or a Dask cluster.

Both run the same ``score_task`` and report each finished task to ``on_done`` as it completes.
The local engine keeps at most two tasks per worker in flight (and scores in the calling
process too), so memory stays bounded whatever the input size; Dask schedules on its own
workers (a LocalCluster when no scheduler address is given). Each process loads the model once.
"""

from __future__ import annotations

import concurrent.futures as cf
import importlib
import multiprocessing
from collections.abc import Callable
from typing import Any

from mlops_ci.batch.plan import Task
from mlops_ci.batch.score import Job, TaskResult, score_task
from mlops_ci.errors import InputError, ServiceError

OnDone = Callable[[TaskResult], None]


def run_local(tasks: list[Task], job: Job, processes: int, on_done: OnDone) -> None:
    """``processes - 1`` worker processes plus this one: while the workers start (importing
    pandas and onnxruntime takes a while) and whenever they have enough queued, this process
    scores the next task itself."""
    if processes == 1:
        for task in tasks:
            on_done(score_task(task, job))
        return
    workers = processes - 1
    context = multiprocessing.get_context("spawn")  # no inherited locks or sessions
    with cf.ProcessPoolExecutor(workers, mp_context=context) as pool:
        pending: set[cf.Future[TaskResult]] = set()
        for task in tasks:
            finished = {f for f in pending if f.done()}
            for future in finished:
                on_done(future.result())
            pending -= finished
            if len(pending) < 2 * workers:
                pending.add(pool.submit(score_task, task, job))
            else:
                on_done(score_task(task, job))
        for future in cf.as_completed(pending):
            on_done(future.result())


def run_dask(
    tasks: list[Task], job: Job, scheduler: str | None, workers: int, on_done: OnDone
) -> list[str]:
    """Run on Dask; returns the worker addresses used."""
    try:  # imported as Any: distributed's own annotations are partial
        distributed: Any = importlib.import_module("distributed")
    except ImportError:
        raise InputError(
            "--engine dask needs dask.distributed", hint="pip install 'mlops-ci[dask]'"
        ) from None
    cluster = None
    try:
        if scheduler:
            client = distributed.Client(scheduler, timeout=30)
        else:
            cluster = distributed.LocalCluster(
                n_workers=workers,
                threads_per_worker=1,
                processes=True,
                dashboard_address=None,
                silence_logs=40,
            )
            client = distributed.Client(cluster)
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
