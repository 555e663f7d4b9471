"""records: the one owner of `.mlops/` — its paths, atomic writes, and the records one step
leaves for another."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from mlops_ci.errors import InputError
from mlops_ci.records import (
    FAILED,
    FOLDER,
    KILLED,
    RUNNING,
    JobFolder,
    RegisterResult,
    TrainLock,
    append_line,
    last_trained_run,
    read_deploy,
    read_json,
    read_registration,
    write_json_atomic,
    write_registration,
)

PACKAGE = Path(__file__).resolve().parents[2] / "mlops_ci"


def test_every_path_of_a_job_is_under_its_mlops_folder(tmp_path: Path) -> None:
    job = JobFolder(tmp_path)
    paths = [
        getattr(job, name)
        for name, value in vars(JobFolder).items()
        if isinstance(value, property) and name != "folder"
    ]
    paths += [job.stage_log("prepare"), job.package_context("iris", "3"), job.deploy_state("prod")]
    assert len(paths) == len(set(paths)) > 10, "two records share a path"
    for path in paths:
        assert path.is_relative_to(tmp_path / FOLDER), path
    assert not (tmp_path / FOLDER).exists(), "naming a path creates nothing"


def test_no_module_but_records_names_the_mlops_folder() -> None:
    # Paths under .mlops/ are built from records.JobFolder (or records.FOLDER): a second module
    # spelling ".mlops" is a second owner. Messages that mention `.mlops/comparison.md` are text,
    # not paths, and are allowed (they are not the bare folder name).
    spelled = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name == "records.py" and path.parent == PACKAGE:
            continue
        for node in ast.walk(ast.parse(path.read_text("utf-8"))):
            if isinstance(node, ast.Constant) and node.value == FOLDER:
                spelled.append(f"{path.relative_to(PACKAGE)}:{node.lineno}")
    assert not spelled, f"'.mlops' spelled outside records.py: {spelled}"


def test_last_trained_run_follows_train_json(tmp_path: Path) -> None:
    job = JobFolder(tmp_path)
    with pytest.raises(InputError, match="no .mlops/train.json"):
        last_trained_run(tmp_path)
    assert last_trained_run(tmp_path, default="abc") == "abc"
    write_json_atomic(job.train, {"status": "finished", "run_id": "r1"})
    assert last_trained_run(tmp_path, default="abc") == "r1"
    write_json_atomic(job.train, {"status": FAILED, "run_id": None, "error": "out of data"})
    with pytest.raises(InputError, match="failed \\(out of data\\)"):
        last_trained_run(tmp_path, default="abc")  # a failed train is never papered over


def test_the_train_lock_tells_a_live_train_from_a_dead_one(tmp_path: Path) -> None:
    """The flock, not a pid: held while its holder lives (any descriptor of it), free once
    it is closed, as the kernel closes a killed process's descriptors."""
    job = JobFolder(tmp_path)
    record = {"status": RUNNING, "pid": 4242, "hostname": "ci-7", "run_id": "r2"}
    write_json_atomic(job.train, record)
    train = TrainLock(tmp_path)
    assert train.acquire("mlops-ci train, pid 4242 on ci-7")
    other = TrainLock(tmp_path)
    assert other.held() and not other.acquire("mlops-ci compare") and not train.held()
    assert other.holder() == "mlops-ci train, pid 4242 on ci-7"
    with pytest.raises(
        InputError, match=r"running in this checkout now \(pid 4242 on ci-7, run r2"
    ):
        last_trained_run(tmp_path, default="abc")
    train.release()
    assert not other.held()
    with pytest.raises(InputError, match=r"was killed \(pid 4242 .*died before recording"):
        last_trained_run(tmp_path)  # running, its lock free: a dead train, not yet settled
    write_json_atomic(job.train, {**record, "status": KILLED, "error": "terminated by SIGTERM"})
    with pytest.raises(InputError, match="was killed .*terminated by SIGTERM.*earlier train"):
        last_trained_run(tmp_path, default="abc")


def test_registration_round_trips_and_a_corrupt_record_names_its_file(tmp_path: Path) -> None:
    assert read_registration(tmp_path) is None
    result = RegisterResult("iris", "4", "r1", "pass", False, "candidate", existing=False)
    write_registration(tmp_path, result)
    assert read_registration(tmp_path) == result
    JobFolder(tmp_path).deploy.write_text("{not json", "utf-8")
    with pytest.raises(InputError, match="deploy.json: not valid JSON"):
        read_deploy(tmp_path)
    JobFolder(tmp_path).deploy.write_text("[1, 2]", "utf-8")
    assert read_deploy(tmp_path) is None  # valid JSON of another shape is no record


def test_append_line_keeps_every_line_whole(tmp_path: Path) -> None:
    audit = JobFolder(tmp_path).deploy_audit
    for i in range(3):
        append_line(audit, {"i": i, "text": "line\nbreak"})
    lines = audit.read_text("utf-8").splitlines()
    assert [json.loads(line)["i"] for line in lines] == [0, 1, 2]
    assert read_json(tmp_path / "absent.json") is None
