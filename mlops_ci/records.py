"""``.mlops/``, the local record of one CI job: the one module that names its paths, writes
them atomically (readers see the old file or the new, never half of one) and reads each
step's record back.

Steps hand on ids, not files; these records are what a later step of the same job reads (the
run `train` made, the verdict `compare` gave, the version `register` created), so the report
and the steps read them here rather than importing one another (comparison.json is read by
``evaluation.comparison.read_comparison``, beside its type, at the path named here). The
registry stays the source of truth: a record names what a step did on this disk, nothing more.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from mlops_ci.errors import InputError

FOLDER = ".mlops"
# train.json's status: a journal, written "running" before the command starts and its outcome
# after; "killed" when SIGTERM/SIGINT ended it, or when a later verb found it dead (see TrainLock).
FINISHED, FAILED, RUNNING, KILLED = "finished", "failed", "running", "killed"


@dataclass(frozen=True)
class JobFolder:
    """Every path under ``ROOT/.mlops/``: the steps' records and their working folders."""

    root: Path

    @property
    def folder(self) -> Path:
        return self.root / FOLDER

    # --- each step's record -------------------------------------------------------------
    @property
    def train(self) -> Path:
        return self.folder / "train.json"

    @property
    def train_lock(self) -> Path:
        """Held (flock) by a train for its whole life: a live train from a dead one."""
        return self.folder / "train.lock"

    @property
    def comparison(self) -> Path:
        return self.folder / "comparison.json"

    @property
    def comparison_md(self) -> Path:
        return self.folder / "comparison.md"

    @property
    def register(self) -> Path:
        return self.folder / "register.json"

    @property
    def package(self) -> Path:
        return self.folder / "package.json"

    @property
    def deploy(self) -> Path:
        return self.folder / "deploy.json"

    @property
    def deploy_audit(self) -> Path:
        """Every deploy, rollback and undeploy of this disk, one JSON line each."""
        return self.folder / "deploy-audit.jsonl"

    @property
    def drift(self) -> Path:
        return self.folder / "drift.json"

    @property
    def drift_md(self) -> Path:
        return self.folder / "drift.md"

    @property
    def quality(self) -> Path:
        return self.folder / "quality.json"

    @property
    def quality_md(self) -> Path:
        return self.folder / "quality.md"

    @property
    def report(self) -> Path:
        return self.folder / "report.md"

    @property
    def pr_comment(self) -> Path:
        """report --pr without a token: the comment saved for a workflow_run job to post."""
        return self.folder / "pr-comment"

    # --- working folders ----------------------------------------------------------------
    @property
    def cache(self) -> Path:
        """The stage cache (content-addressed files and one record per stage run)."""
        return self.folder / "cache"

    @property
    def train_work(self) -> Path:
        """train's working folder: the command's log, lineage files, stage artifacts."""
        return self.folder / "train"

    def stage_log(self, stage: str) -> Path:
        return self.train_work / f"stage-{stage}.log"

    def package_context(self, name: str, version: str) -> Path:
        """A version's Docker build context."""
        return self.folder / "package" / f"{name}-{version}"

    def deploy_state(self, env: str) -> Path:
        """What a deploy target keeps of an environment (the local service's pid and port, the
        docker front's routes)."""
        return self.folder / "deploy" / env

    @property
    def serve_state(self) -> Path:
        """`mlops-ci serve`'s downloaded models and shared worker state."""
        return self.folder / "serve"

    @property
    def batch_state(self) -> Path:
        """`mlops-ci batch-score`'s downloaded models."""
        return self.folder / "batch"


def write_text_atomic(path: Path, text: str) -> Path:
    """Write to a temporary file beside ``path`` and rename it over: readers see old or new."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; records and build contexts are shared
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_json_atomic(path: Path, data: Any) -> Path:
    return write_text_atomic(path, json.dumps(data, indent=2) + "\n")


def append_line(path: Path, data: Any) -> None:
    """One JSON line appended (an audit log: each line whole, older lines untouched)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(data) + "\n")


def read_json(path: Path) -> Any | None:
    """The record at ``path``, None when absent; a corrupt record is an error naming it."""
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text("utf-8"))
    except ValueError as err:
        raise InputError(
            f"{path}: not valid JSON ({err})", hint="delete it and rerun the step"
        ) from None


def read_object(path: Path) -> dict[str, Any] | None:
    """The record at ``path`` when it is a JSON object; None when absent or of another shape."""
    record = read_json(path)
    return record if isinstance(record, dict) else None


# --- the records one step leaves for another ----------------------------------------------
@dataclass(frozen=True)
class RegisterResult:
    """register.json: the version `register` created (or found) for a run."""

    name: str
    version: str
    run_id: str
    verdict: str
    forced: bool
    alias: str
    existing: bool  # the run already had a version; nothing new was created


def try_lock(path: Path, holder: str) -> int | None:
    """An exclusive ``flock`` on ``path`` (made if missing), taken without waiting, with
    ``holder`` written in the file for whoever finds it taken: its descriptor (closing it, or
    the holder's death, releases the lock), or None while another process holds it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    os.ftruncate(fd, 0)
    os.pwrite(fd, holder.encode("utf-8", "replace"), 0)
    return fd


class TrainLock:
    """The exclusive ``flock`` a train holds on ``.mlops/train.lock`` while it lives (and a
    verb settling a dead train's record, for that moment). The kernel drops it when the
    holder dies, however it dies, so a record in state running whose lock is free is a dead
    train's: no pid check, no confusion with a reused pid. The file says who holds it."""

    def __init__(self, root: Path) -> None:
        self.path = JobFolder(root).train_lock
        self._fd: int | None = None

    def acquire(self, holder: str) -> bool:
        """Take the lock without waiting; False when another holds it."""
        self._fd = try_lock(self.path, holder)
        return self._fd is not None

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the last descriptor drops the lock
            self._fd = None

    def held(self) -> bool:
        """Whether a live process holds the lock now (this object not counting)."""
        if self._fd is not None or not self.path.is_file():
            return False
        fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)
        return False

    def holder(self) -> str:
        """Who holds (or last held) the lock, as it wrote it."""
        with contextlib.suppress(OSError):
            return self.path.read_text("utf-8", errors="replace").strip() or "unknown"
        return "unknown"


def read_train(root: Path) -> dict[str, Any] | None:
    """train.json: ``status`` (running, finished, failed or killed), ``run_id``, and what the
    run did, or who ran it and when."""
    return read_object(JobFolder(root).train)


def describe_train(record: dict[str, Any]) -> str:
    """``pid 4242 on ci-7, started 2024-05-01 10:02:11 UTC``: which train a record names."""
    started = record.get("started_at")
    when = ""
    if isinstance(started, (int, float)):
        when = time.strftime(", started %Y-%m-%d %H:%M:%S UTC", time.gmtime(started))
    run = f", run {record['run_id']}" if record.get("run_id") else ""
    return f"pid {record.get('pid', '?')} on {record.get('hostname', '?')}{when}{run}"


SETTLING = "settling a dead train"  # in the train lock's holder while a verb settles a record


def last_trained_run(root: Path, default: str | None = None) -> str:
    """The run of this checkout's last successful `train`; refused when the last train failed,
    was killed, died, or is running now (never the run of the train before it).

    ``default`` is taken only when this checkout has no train record at all.
    """
    record = read_train(root)
    if record is None or not (record.get("run_id") or record.get("status")):
        if default:
            return default
        raise InputError(
            "no run given and no .mlops/train.json found",
            hint="run `mlops-ci train` first or pass --run RUN_ID",
        )
    status = record.get("status")
    lock = TrainLock(root)
    # held by a verb settling the dead train's record (its holder says so), the train is dead
    if status == RUNNING and lock.held() and SETTLING not in lock.holder():
        raise InputError(
            f"a `mlops-ci train` is running in this checkout now ({describe_train(record)}; "
            f"{lock.path.name} held by {lock.holder()}): its run is not ready, and the run "
            "before it is not this train's",
            hint="wait for it to finish and rerun, or pass --run RUN_ID explicitly",
        )
    if status in (RUNNING, KILLED):
        why = record.get("error") or "it died before recording an outcome"
        raise InputError(
            f"the last `mlops-ci train` was killed ({describe_train(record)}: {why}); "
            "refusing to act on the run of an earlier train",
            hint="rerun `mlops-ci train`, or pass --run RUN_ID explicitly",
        )
    if status == FAILED:
        raise InputError(
            f"the last `mlops-ci train` failed ({record.get('error', 'no reason recorded')}); "
            "refusing to act on the run of an earlier train",
            hint="fix the training and rerun `mlops-ci train`, or pass --run RUN_ID explicitly",
        )
    return str(record["run_id"])


def write_registration(root: Path, result: RegisterResult) -> RegisterResult:
    write_json_atomic(JobFolder(root).register, asdict(result))
    return result


def read_registration(root: Path) -> RegisterResult | None:
    data = read_object(JobFolder(root).register)
    return RegisterResult(**data) if data else None


def read_package(root: Path) -> dict[str, Any] | None:
    return read_object(JobFolder(root).package)


def read_deploy(root: Path) -> dict[str, Any] | None:
    return read_object(JobFolder(root).deploy)
