"""The forked batch-score workers' hand-out and reports, with multiprocessing's shared counter
and pipe (no process started: the layout rule keeps multiprocessing out of tests/unit/)."""

from __future__ import annotations

import pytest

from mlops_ci.batch import forked
from mlops_ci.batch.plan import Task
from mlops_ci.batch.score import TaskResult

pytestmark = pytest.mark.timeout(60)


def tasks(n: int) -> list[Task]:
    return [Task(i, "rows.parquet", "parquet", i, -1, 0, 10) for i in range(n)]


def test_forked_workers_claim_each_task_once_and_a_failure_stops_the_claims() -> None:
    import multiprocessing

    counter = multiprocessing.get_context("fork").Value("q", 0)
    work = tasks(3)
    claimed = [forked._claim(work, counter) for _ in range(4)]
    assert [t.index if t else None for t in claimed] == [0, 1, 2, None]
    counter.value = 0
    forked._stop(counter, len(work))
    assert forked._claim(work, counter) is None


def test_a_forked_workers_reports_are_passed_on_and_its_error_raised() -> None:
    import multiprocessing

    receive, send = multiprocessing.get_context("fork").Pipe(duplex=False)
    result = TaskResult(3, 10, 10, 0, 0.0, "123.2", 1)
    send.send(("done", result))
    done: list[TaskResult] = []
    assert forked._receive([receive], done.append, timeout=5) == [receive]
    assert done == [result]
    send.send(("error", ValueError("the model said no")))
    with pytest.raises(ValueError, match="the model said no"):
        forked._receive([receive], done.append, timeout=5)
    send.close()
    assert forked._receive([receive], done.append, timeout=5) == []  # the worker is done
    receive.close()
