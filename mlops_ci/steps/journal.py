"""train's journal: ``.mlops/train.json`` says what a train is doing before it does it, and how
it ended after, so a train killed at any moment leaves a record that tells the truth.

A train holds ``.mlops/train.lock`` (``records.TrainLock``) for its whole life and writes its
record in state running (pid, host, start, a train id) before anything runs; its MLflow run,
tagged with the train id, is in the record from the moment it is asked for. Its outcome
replaces the record: finished (``train.finish``), failed, or killed (SIGTERM, SIGINT). A
record in state running whose lock is free is a dead train's (``kill -9``, a lost machine):
the next verb that reads it (train, compare, register) settles it, recording it killed, by
whom and when, and ends its MLflow run KILLED; compare and register then refuse the run of
any earlier train. A run the registry could not end at the time stays open in the record
and is ended by the next verb, found by its tag even where the answer to its creation was
lost.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
import uuid
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any

from mlops_ci.config.types import Config
from mlops_ci.credentials import redact_text
from mlops_ci.errors import InputError, MlopsError, ServiceError, Terminated
from mlops_ci.records import (
    FAILED,
    KILLED,
    RUNNING,
    SETTLING,
    JobFolder,
    TrainLock,
    describe_train,
    last_trained_run,
    read_train,
    write_json_atomic,
)
from mlops_ci.registry import TAG_TRAIN_ID, ModelRegistry, RunRecord

# MLflow's run status for a train that failed, and for one that was killed.
_RUN_STATUS = {FAILED: "FAILED", KILLED: "KILLED"}


def who(verb: str) -> str:
    """``mlops-ci compare, pid 4242 on ci-7``: a process, as records and locks name it."""
    return f"mlops-ci {verb}, pid {os.getpid()} on {socket.gethostname()}"


class TrainJournal:
    """One train's record, from its intent to its outcome, while it holds the train lock.

    ``with TrainJournal(...) as journal`` refuses (exit 2) while another train of the
    checkout lives, settles a dead one's record (``said`` hears a line of what it settled),
    then records this train as running. ``start_run`` makes the MLflow run, ``failed``
    records an end that was not a success; ``train.finish`` writes a success.
    """

    def __init__(
        self,
        config: Config,
        registry: ModelRegistry,
        env: Mapping[str, str] | None = None,
        said: Callable[[str], None] | None = None,
    ) -> None:
        self.config, self.registry, self.env, self.said = config, registry, env, said
        self.record: dict[str, Any] = {}
        self._lock = TrainLock(config.root)

    def __enter__(self) -> TrainJournal:
        if not self._lock.acquire(who("train")):
            raise InputError(
                f"another `mlops-ci train` is running in this checkout ({self._lock.holder()})",
                hint="trains of one checkout run one at a time: wait for it to end",
            )
        try:
            settled = settle(self.config, self.registry, "train", locked=True)
            if settled and self.said is not None:
                self.said(f"settled: {settled}")
            left = read_train(self.config.root)
            if left is not None and left.get("run_open"):  # this record would lose its id
                raise ServiceError(
                    f"the MLflow run of the last train ({describe_train(left)}) could not be "
                    f"ended: {settled}",
                    hint="the registry failed; train again once it answers",
                )
            self.record = {
                "status": RUNNING,
                "train_id": uuid.uuid4().hex,
                "pid": os.getpid(),
                "hostname": socket.gethostname(),
                "started_at": time.time(),
                "run_id": None,
                "run_open": False,  # an MLflow run may exist that is not ended yet
            }
            self._write()
        except BaseException:
            self._lock.release()
            raise
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        err: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self._lock.release()

    @property
    def run_id(self) -> str | None:
        found = self.record.get("run_id")
        return str(found) if found else None

    def start_run(self, tags: dict[str, str]) -> str:
        """This train's MLflow run, RUNNING, tagged with the train id (made once). The record
        says a run may exist before the registry is asked: a creation whose answer is lost
        still leaves a run the next verb finds by its tag and ends."""
        if self.run_id is not None:
            return self.run_id
        self.record["run_open"] = True
        self._write()
        run_id = self.registry.start_run(
            self.config.registry.experiment, {**tags, TAG_TRAIN_ID: self.record["train_id"]}
        )
        self.record["run_id"] = run_id
        self._write()
        return run_id

    def failed(self, err: BaseException) -> None:
        """The outcome of a train that did not finish: killed (a signal) or failed (its
        error's first line, without credentials: an MLflow error quotes the tracking URI as
        given), and its MLflow run ended KILLED or FAILED. Never raises: the original error
        matters more than its record."""
        status = KILLED if isinstance(err, (Terminated, KeyboardInterrupt)) else FAILED
        message = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        if isinstance(err, KeyboardInterrupt):
            message = "interrupted (SIGINT)"
        self.record.update(
            status=status, error=redact_text(message, self.env)[:500], ended_at=time.time()
        )
        with contextlib.suppress(OSError):
            self._write()
        if self.record.get("run_open"):
            with contextlib.suppress(Exception):  # what is not ended, the next verb ends
                _end_run(self.config, self.registry, self.record, lost_ok=False)
                self._write()

    def _write(self) -> None:
        write_json_atomic(JobFolder(self.config.root).train, self.record)


def settle(config: Config, registry: ModelRegistry, verb: str, locked: bool = False) -> str | None:
    """Resolve what a dead train left in train.json: a record in state running whose train
    lock is free becomes killed (when, by whom), and an MLflow run left open is ended
    (KILLED or FAILED). Returns a line saying what was settled, or None. ``locked``: the
    caller holds the train lock (a train starting); otherwise a held lock means a train is
    alive and nothing is touched. A registry that fails here is named in the line; the run
    stays open in the record for the next verb."""
    record = read_train(config.root)
    if record is None or not _unsettled(record):
        return None
    lock = TrainLock(config.root)
    if not locked and not lock.acquire(f"{who(verb)}, {SETTLING}"):
        return None
    try:
        record = read_train(config.root)  # again, under the lock
        if record is None or not _unsettled(record):
            return None
        said = []
        if record.get("status") == RUNNING:
            record.update(
                status=KILLED,
                error=f"it died without recording an outcome (found by mlops-ci {verb})",
                settled_at=time.time(),
                settled_by=who(verb),
            )
            write_json_atomic(JobFolder(config.root).train, record)
            said.append(f"the last train ({describe_train(record)}) died; recorded as killed")
        if record.get("run_open"):
            said.append(_end_run(config, registry, record, lost_ok=True))
            write_json_atomic(JobFolder(config.root).train, record)
        return "; ".join(s for s in said if s) or None
    finally:
        if not locked:
            lock.release()


def trained_run(
    config: Config, registry: ModelRegistry, verb: str, default: str | None = None
) -> str:
    """``records.last_trained_run``, once a dead train's record is settled: compare and
    register never act on the run of a train before one that died, failed or runs now."""
    settle(config, registry, verb)
    return last_trained_run(config.root, default)


def check_finished(run: RunRecord, done: str) -> None:
    """Refuse a run that did not finish (killed, failed, or still running): its model may be
    partial, and no verdict or version may rest on it."""
    if run.status != "FINISHED":
        raise InputError(
            f"run '{run.run_id}' is {run.status}, not FINISHED: a failed, killed or unfinished "
            f"training run is never {done}",
            hint="rerun `mlops-ci train`",
        )


def _unsettled(record: dict[str, Any]) -> bool:
    return record.get("status") == RUNNING or bool(record.get("run_open"))


def _end_run(config: Config, registry: ModelRegistry, record: dict[str, Any], lost_ok: bool) -> str:
    """End the record's open MLflow run(s) (found by the train id's tag) as its status says,
    updating ``record`` (``run_open``; ``run_id`` where only the tag knew it); a line saying
    what was done. A run whose creation was never answered may land later: unless
    ``lost_ok`` (a later verb's last look), the record keeps it open when none is found."""
    status = _RUN_STATUS.get(str(record.get("status")), "FAILED")
    try:
        ended = registry.end_runs(
            config.registry.experiment, TAG_TRAIN_ID, str(record.get("train_id")), status
        )
    except MlopsError as err:
        return f"its MLflow run could not be ended now ({err}); the next verb tries again"
    if ended or record.get("run_id") or lost_ok:
        record["run_open"] = False
    if ended and not record.get("run_id"):
        record["run_id"] = ended[0]
    return f"its MLflow run {', '.join(ended)} set {status}" if ended else ""
