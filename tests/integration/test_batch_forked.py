"""The forked batch-score workers' hand-out, reports and failures, with multiprocessing's shared
counter and pipe and real forked workers (the layout rule keeps multiprocessing out of
tests/unit/): a worker's error is raised as it was, a killed worker stops the others."""

from __future__ import annotations

import multiprocessing
import os
import signal
import time
from collections.abc import Callable

import pytest

from mlops_ci.batch import forked
from mlops_ci.batch.plan import Task
from mlops_ci.batch.score import Job, TaskResult
from mlops_ci.errors import ConfigError, GateFailed, InputError, ServiceError, Terminated
from mlops_ci.packaging.convert import OnnxFailed
from mlops_ci.serve.payload import PayloadError

pytestmark = pytest.mark.timeout(60)


def tasks(n: int) -> list[Task]:
    return [Task(i, "rows.parquet", "parquet", i, -1, 0, 10) for i in range(n)]


def test_forked_workers_claim_each_task_once_and_a_failure_stops_the_claims() -> None:
    claims = forked.Claims(multiprocessing.get_context("fork"), 10, 2)
    assert (claims.start(1), claims.start(2)) == (0, 5)  # each its own share, in order
    first = [claims.claim(at) for at in (0, 1, 2, 3, 4)]
    second = [claims.claim(at) for at in (5, 6)]
    assert first == [0, 1, 2, 3, 4] and second == [5, 6]
    # the first worker's share is done: it takes from the end of the other's, backwards
    assert [claims.claim(5), claims.claim(10), claims.claim(9)] == [9, 8, 7]
    assert claims.claim(7) is None and claims.claim(0) is None  # all taken
    stopped = forked.Claims(multiprocessing.get_context("fork"), 3, 3)
    assert [stopped.start(slot) for slot in (1, 2, 3)] == [0, 1, 2]
    assert stopped.claim(1) == 1
    stopped.stop()
    assert stopped.claim(0) is None


def test_a_forked_workers_reports_are_passed_on_and_its_error_raised() -> None:
    receive, send = multiprocessing.get_context("fork").Pipe(duplex=False)
    child = Ended(0)
    result = TaskResult(3, 10, 10, 0, 0.0, "123.2", 1)
    send.send(("done", result))
    done: list[TaskResult] = []
    assert forked._receive({receive: child}, done.append, timeout=5) == {receive: child}
    assert done == [result]
    send.send(("error", forked._described(ValueError("the model said no"))))
    with pytest.raises(ValueError, match="the model said no"):
        forked._receive({receive: child}, done.append, timeout=5)
    send.close()
    assert forked._receive({receive: child}, done.append, timeout=5) == {}  # the worker is done
    receive.close()


class Ended:
    """A child process as ``_receive`` sees it once its pipe is closed."""

    def __init__(self, exitcode: int) -> None:
        self.exitcode, self.name = exitcode, "batch-score-2"

    def join(self, timeout: float) -> None:
        pass


def test_a_killed_workers_closed_pipe_is_an_error() -> None:
    receive, send = multiprocessing.get_context("fork").Pipe(duplex=False)
    send.close()
    with pytest.raises(forked.WorkerDied, match="batch-score-2 was killed by SIGKILL"):
        forked._receive({receive: Ended(-9)}, print, timeout=5)
    receive.close()


def raised(err: BaseException) -> BaseException:
    """``err`` as the parent raises it after a child sent it through a pipe."""
    receive, send = multiprocessing.get_context("fork").Pipe(duplex=False)
    try:
        raise err
    except BaseException as caught:
        send.send(("error", forked._described(caught)))
    with pytest.raises(BaseException) as got:
        forked._receive({receive: Ended(0)}, print, timeout=5)
    receive.close()
    send.close()
    return got.value


def test_errors_that_pickle_cannot_rebuild_reach_the_parent_as_what_they_were() -> None:
    # Sent as objects, these two were lost: pickle rebuilt them by their args, which their
    # constructors do not take (unless a library, as dask's tblib can, has patched exceptions'
    # pickling in this process: a test of that would depend on what ran before it).
    payload = raised(PayloadError(422, "the model cannot score these values"))
    assert isinstance(payload, forked.WorkerError)
    assert str(payload) == "PayloadError: the model cannot score these values"
    assert "raise err" in str(payload.__cause__)  # the worker's traceback, for --debug
    stop = raised(Terminated(signal.SIGTERM))
    assert isinstance(stop, Terminated) and stop.exit_code == 143
    bad = raised(OnnxFailed("rows.csv: row 7: cannot be read", hint="fix the row"))
    assert type(bad) is InputError and bad.exit_code == 2  # OnnxFailed is an InputError
    assert (str(bad), bad.hint) == ("rows.csv: row 7: cannot be read", "fix the row")
    assert type(raised(GateFailed("no"))) is GateFailed
    assert type(raised(ServiceError("down"))) is ServiceError
    config = raised(ConfigError(["mlops.yaml:3: a", "mlops.yaml:4: b"]))
    assert isinstance(config, ConfigError) and config.problems == [
        "mlops.yaml:3: a",
        "mlops.yaml:4: b",
    ]
    assert type(raised(KeyError("x"))) is KeyError
    assert str(raised(RuntimeError("a bug"))) == "a bug"


def fake_scores(
    parent: int, in_child: Callable[[], None], seconds: float = 0.01
) -> Callable[[Task, Job], TaskResult]:
    """``score_task`` for a job of nothing: the parent sleeps a little per task, a forked
    child calls ``in_child`` first (its failure)."""

    def score(task: Task, job: Job) -> TaskResult:
        if os.getpid() != parent:
            in_child()
        time.sleep(seconds)
        return TaskResult(task.index, 10, 10, 0, seconds, str(os.getpid()), 1)

    return score


JOB = Job("model", ("x",), (), "parts")


@pytest.mark.parametrize(
    ("err", "expected"),
    [
        (InputError("rows.csv: cannot be read as CSV: invalid UTF-8"), InputError),
        (PayloadError(422, "the model cannot score these values"), forked.WorkerError),
    ],
)
def test_a_forked_workers_error_stops_the_job_and_is_raised_as_it_was(
    monkeypatch: pytest.MonkeyPatch, err: Exception, expected: type[Exception]
) -> None:
    def fail() -> None:
        raise err

    monkeypatch.setattr(forked, "score_task", fake_scores(os.getpid(), fail))
    done: list[TaskResult] = []
    with pytest.raises(expected, match="cannot") as got:
        forked.run_forked(tasks(500), JOB, 2, done.append)
    assert str(got.value).endswith(str(err))
    assert len(done) < 100  # stopped at the error, not run to the end


@pytest.mark.parametrize("workers", [2, 3])
def test_a_killed_worker_stops_the_others_early(
    monkeypatch: pytest.MonkeyPatch, workers: int
) -> None:
    parent = os.getpid()
    started = multiprocessing.get_context("fork").Value("q", 0)

    def die_first() -> None:  # the first child to start is SIGKILLed (the OOM killer, say)
        with started.get_lock():
            first, started.value = started.value == 0, started.value + 1
        if first:
            os.kill(os.getpid(), signal.SIGKILL)

    monkeypatch.setattr(forked, "score_task", fake_scores(parent, die_first))
    done: list[TaskResult] = []
    began = time.monotonic()
    with pytest.raises(forked.WorkerDied, match="was killed by SIGKILL"):
        forked.run_forked(tasks(1000), JOB, workers, done.append)
    assert time.monotonic() - began < 3  # the job alone takes 10 s of the parent's sleep
    assert len(done) < 200
