"""The local engine's worker threads (where it does not fork): every task once, bounded in
flight, each its own slot (the forked workers' hand-out and reports: tests/integration/
test_batch_forked.py; their forking: test_batch_score.py)."""

from __future__ import annotations

import threading
import time

import pytest

from mlops_ci.batch import engines, score
from mlops_ci.batch.plan import Task
from mlops_ci.batch.score import Job, TaskResult

pytestmark = pytest.mark.timeout(60)
JOB = Job("/p/model", ("x",), ("id",), "/p/parts")


def tasks(n: int) -> list[Task]:
    return [Task(i, "rows.parquet", "parquet", i, -1, 0, 10) for i in range(n)]


def test_workers_score_every_task_once_in_their_own_slots_with_few_in_flight(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    lock = threading.Lock()
    started: list[int] = []
    running = 0
    most = 0

    def fake(task: Task, job: Job) -> TaskResult:
        nonlocal running, most
        with lock:
            started.append(task.index)
            running += 1
            most = max(most, running)
        time.sleep(0.002)
        with lock:
            running -= 1
        return TaskResult(task.index, 10, 10, 0, 0.0, score.worker_name(), 1)

    monkeypatch.setattr(engines, "score_task", fake)
    done: list[TaskResult] = []
    engines.run_local(tasks(40), JOB, 2, done.append, fork=False)
    assert sorted(started) == list(range(40)) and sorted(r.index for r in done) == list(range(40))
    assert most <= 2
    assert {r.worker.rsplit(".", 1)[-1] for r in done} <= {"1", "2"}  # a slot per thread
    one: list[TaskResult] = []
    engines.run_local(tasks(3), JOB, 1, one.append)  # one worker: in the calling thread
    assert [r.index for r in one] == [0, 1, 2] and all("." not in r.worker for r in one)


def test_a_failed_task_fails_the_job_and_the_tasks_queued_are_not_started(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    started: list[int] = []

    def fake(task: Task, job: Job) -> TaskResult:
        started.append(task.index)
        if task.index == 1:
            raise ValueError("the model said no")
        time.sleep(0.01)
        return TaskResult(task.index, 10, 10, 0, 0.0, score.worker_name(), 1)

    monkeypatch.setattr(engines, "score_task", fake)
    with pytest.raises(ValueError, match="the model said no"):
        engines.run_local(tasks(100), JOB, 2, lambda _: None, fork=False)
    assert len(started) < 10  # at most two tasks per worker were ever handed out beyond it
