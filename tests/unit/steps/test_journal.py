"""train's journal against the in-memory registry: a dead train's record settled by the next
verb (killed, by whom, its run KILLED), a live one refused, a train's outcome and its run's
end recorded, and a run the registry could not end left for the next verb."""

from __future__ import annotations

import json
import os
from typing import Any

import pytest

from mlops_ci.config.types import Config
from mlops_ci.errors import InputError, ServiceError, Terminated
from mlops_ci.records import JobFolder, TrainLock, read_train
from mlops_ci.registry import TAG_TRAIN_ID
from mlops_ci.steps.journal import TrainJournal, settle, trained_run
from tests.support.fakes import InMemoryRegistry


def dead_train(config: Config, registry: InMemoryRegistry, **record: Any) -> dict[str, Any]:
    """train.json as a train killed with SIGKILL left it: running, its lock free."""
    run_id = registry.start_run("iris", {TAG_TRAIN_ID: "t-dead"})
    written = {
        "status": "running",
        "train_id": "t-dead",
        "pid": 4242,
        "hostname": "ci-7",
        "started_at": 1_700_000_000.0,
        "run_id": run_id,
        "run_open": True,
        **record,
    }
    JobFolder(config.root).train.parent.mkdir(parents=True, exist_ok=True)
    JobFolder(config.root).train.write_text(json.dumps(written))
    return written


def test_the_next_verb_names_a_dead_train_ends_its_run_and_refuses_the_run_before(
    config: Config, fake_registry: InMemoryRegistry
) -> None:
    earlier = fake_registry.add_run(object())  # the run of the train before: never used
    dead = dead_train(config, fake_registry)
    with pytest.raises(InputError) as refused:
        trained_run(config, fake_registry, "compare", default=earlier.run_id)
    said = str(refused.value)
    assert said.startswith("the last `mlops-ci train` was killed (pid 4242 on ci-7, started ")
    assert f"run {dead['run_id']}" in said and earlier.run_id not in said
    assert refused.value.exit_code == 2 and "--run" in str(refused.value.hint)
    record = read_train(config.root) or {}
    assert (record["status"], record["run_open"]) == ("killed", False)
    assert record["settled_by"] == f"mlops-ci compare, pid {os.getpid()} on {os.uname().nodename}"
    assert fake_registry.runs[dead["run_id"]].status == "KILLED"
    assert settle(config, fake_registry, "register") is None, "settled once"


def test_a_live_train_is_refused_by_its_pid_and_its_record_left_alone(
    config: Config, fake_registry: InMemoryRegistry
) -> None:
    dead_train(config, fake_registry)
    live = TrainLock(config.root)
    assert live.acquire("mlops-ci train, pid 4242 on ci-7")
    try:
        with pytest.raises(InputError, match=r"is running in this checkout now \(pid 4242 on "):
            trained_run(config, fake_registry, "register")
        with pytest.raises(InputError, match="another `mlops-ci train` is running .*pid 4242"):
            TrainJournal(config, fake_registry).__enter__()
    finally:
        live.release()
    assert (read_train(config.root) or {})["status"] == "running"
    assert {r.status for r in fake_registry.runs.values()} == {"RUNNING"}


def test_a_dead_train_being_settled_by_another_verb_is_named_dead_not_running(
    config: Config, fake_registry: InMemoryRegistry
) -> None:
    """Two compares at once: the first holds the lock while it settles the dead train's
    record; the second reads the record still running, and the holder says it is a settler."""
    dead_train(config, fake_registry)
    settler = TrainLock(config.root)
    assert settler.acquire("mlops-ci compare, pid 4243 on ci-7, settling a dead train")
    try:
        with pytest.raises(InputError, match=r"the last `mlops-ci train` was killed \(pid 4242"):
            trained_run(config, fake_registry, "compare")
    finally:
        settler.release()


@pytest.mark.parametrize(
    ("error", "ended"),
    [
        (Terminated(15), ("killed", "terminated by SIGTERM", "KILLED")),
        (KeyboardInterrupt(), ("killed", "interrupted (SIGINT)", "KILLED")),
        (InputError("no model written\nhint"), ("failed", "no model written", "FAILED")),
    ],
)
def test_a_train_records_its_intent_then_how_it_ended_and_ends_its_run(
    config: Config, fake_registry: InMemoryRegistry, error: BaseException, ended: tuple[str, ...]
) -> None:
    settled: list[str] = []
    dead_train(config, fake_registry)
    with TrainJournal(config, fake_registry, said=settled.append) as journal:
        record = read_train(config.root) or {}
        assert (record["status"], record["pid"], record["run_id"]) == ("running", os.getpid(), None)
        assert record["run_open"] is False
        assert TrainLock(config.root).held()
        run_id = journal.start_run({"mlops.model.name": "iris"})
        assert (read_train(config.root) or {})["run_id"] == run_id
        assert fake_registry.runs[run_id].tags[TAG_TRAIN_ID] == record["train_id"]
        journal.failed(error)
    assert not TrainLock(config.root).held()
    assert settled and settled[0].startswith("settled: the last train (pid 4242 on ci-7")
    record = read_train(config.root) or {}
    assert (record["status"], record["error"], fake_registry.runs[run_id].status) == ended
    assert record["run_open"] is False


class Unanswering(InMemoryRegistry):
    """A registry whose run creation lands but whose answer is lost, and which is down for
    ending runs while ``down``."""

    down = True

    def start_run(self, experiment: str, tags: dict[str, str]) -> str:
        super().start_run(experiment, tags)
        raise ServiceError("MLflow at http://mlflow:5000 did not answer create_run within 8 s")

    def end_runs(self, experiment: str, key: str, value: str, status: str) -> list[str]:
        if self.down:
            raise ServiceError("MLflow at http://mlflow:5000 failed: HTTP 503")
        return super().end_runs(experiment, key, value, status)


def test_a_run_whose_creation_was_lost_is_found_by_its_tag_and_ended_by_the_next_verb(
    config: Config,
) -> None:
    registry = Unanswering()
    with TrainJournal(config, registry) as journal, pytest.raises(ServiceError) as lost:
        journal.start_run({})
    journal.failed(lost.value)
    record = read_train(config.root) or {}
    assert (record["status"], record["run_id"], record["run_open"]) == ("failed", None, True)
    assert [r.status for r in registry.runs.values()] == ["RUNNING"]
    registry.down = False
    note = settle(config, registry, "compare")
    (run_id,) = registry.runs
    assert note == f"its MLflow run {run_id} set FAILED"
    record = read_train(config.root) or {}
    assert (record["run_id"], record["run_open"]) == (run_id, False)
    assert registry.runs[run_id].status == "FAILED"


def test_a_train_does_not_start_over_a_dead_trains_run_the_registry_could_not_end(
    config: Config,
) -> None:
    """Ending the dead train's run fails (the registry answers 503): a new train would write
    its own record over the only one naming that run, so it stops (exit 3) and leaves the
    record, which the next verb settles once the registry answers."""
    registry = Unanswering()
    registry.start_run = super(Unanswering, registry).start_run  # type: ignore[method-assign]
    dead = dead_train(config, registry)
    with pytest.raises(ServiceError) as refused, TrainJournal(config, registry):
        pytest.fail("the train started")
    assert refused.value.exit_code == 3 and "could not be ended" in str(refused.value)
    assert "HTTP 503" in str(refused.value) and not TrainLock(config.root).held()
    record = read_train(config.root) or {}
    assert (record["train_id"], record["status"], record["run_open"]) == ("t-dead", "killed", True)
    registry.down = False
    with TrainJournal(config, registry):
        pass
    assert registry.runs[dead["run_id"]].status == "KILLED"
