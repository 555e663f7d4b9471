"""Where tasks run: worker processes on this machine, or a Dask cluster.

Both run the same ``score_task`` and report each finished task to ``on_done`` as it completes.
The local engine keeps at most two tasks per worker process in flight (and one in this
process, which scores too), so memory stays bounded whatever the input size; Dask schedules
on its own workers (a LocalCluster when no scheduler address is given). Each process loads the
model once.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import importlib
from collections.abc import Callable
from itertools import islice
from typing import Any

from mlops_ci.batch.plan import Task
from mlops_ci.batch.score import Job, TaskResult, close_models, fresh_process, score_task
from mlops_ci.batch.workers import mp_context, start_method
from mlops_ci.errors import InputError, ServiceError
from mlops_ci.extras import install_hint

OnDone = Callable[[TaskResult], None]


def run_local(tasks: list[Task], job: Job, processes: int, on_done: OnDone) -> None:
    """Score with ``processes`` workers, this process one of them: it scores tasks itself
    between collecting the others' results, from the first moment, while the worker
    processes are still starting (a fork server's start is a few tenths of a second, as long
    as scoring 300,000 rows on one core)."""
    queue = iter(tasks)
    helpers = min(processes, len(tasks)) - 1
    if helpers <= 0:
        for each in queue:
            on_done(score_task(each, job))
        return
    task: Task | None
    with (
        cf.ProcessPoolExecutor(helpers, mp_context=mp_context(), initializer=fresh_process) as pool,
        cf.ThreadPoolExecutor(1) as starter,
    ):
        # A submit waits until the fork server has forked its worker: a thread does that wait.
        first = list(islice(queue, 2 * helpers))
        starting = starter.submit(lambda: {pool.submit(score_task, task, job) for task in first})
        while not starting.done() and (task := next(queue, None)) is not None:
            on_done(score_task(task, job))
        pending = starting.result()
        while True:
            done = {future for future in pending if future.done()}
            for future in done:
                on_done(future.result())
            pending = (pending - done) | {
                pool.submit(score_task, task, job) for task in islice(queue, len(done))
            }
            if (task := next(queue, None)) is None:
                break
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
