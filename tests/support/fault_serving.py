"""The serving side under faults (issue 40): `deploy` to the local target killed (-9) mid-canary
and in the 100 % window, then `status` and the same deploy again; and the input log of a real
`mlops-ci serve` on a disk that fills up (RLIMIT_FSIZE lowered on the live process, then
raised: "space comes back") or stays full until shutdown. The embedded SQLite registry keeps
the alias history (faults.watch_aliases); checks are in ``tests/support/fault_harness.py``."""

from __future__ import annotations

import random
import resource
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pandas as pd
from mlflow import MlflowClient

from mlops_ci.config.types import Config, load_config
from mlops_ci.records import JobFolder
from mlops_ci.registry.mlflow import MlflowRegistry
from mlops_ci.steps.compare import compare
from mlops_ci.steps.deploy import deploy
from mlops_ci.steps.package import package
from mlops_ci.steps.register import register
from mlops_ci.steps.train import train
from mlops_ci.targets.local import LocalTarget
from tests.support.fault_harness import (
    IN_PROCESS,
    Outcome,
    Verb,
    alias_history,
    audit_lines,
    check,
    positive,
    quick_evaluation,
    read_record,
    run_verb,
    twin_version,
    watch_aliases,
)
from tests.support.serve_helpers import free_port
from tests.support.store import copy_example

WINDOW_S = 1.0
ROLLOUT = (
    f"{{steps: [10, 50, 100], window_seconds: {WINDOW_S:g}, probe_requests: 10, min_requests: 5}}"
)
ENV = "qa"
T = TypeVar("T")


@dataclass(frozen=True)
class Deployment:
    """Two registered, packaged versions of the iris model and a local environment `qa`
    serving the first."""

    config: Config
    versions: tuple[str, str]
    models: tuple[Path, Path]  # each version's package folder (model/)

    @property
    def project(self) -> Path:
        return self.config.root

    @property
    def target(self) -> LocalTarget:
        return LocalTarget(self.config, self.config.deploy[ENV])

    @property
    def db(self) -> Path:
        return self.project / ".mlops" / "mlflow.db"

    def alias(self) -> str | None:
        held = alias_history(self.db, self.config.model.name, self.config.deploy[ENV].alias)
        return held[-1] if held else None

    def live(self) -> dict[str, float] | None:
        """The split the serving process applies now (None: no process answers)."""
        try:
            return positive(self.target.traffic()["weights"])
        except Exception:  # a dead process or a refused call: nothing serves
            return None


@contextmanager
def deployment(work: Path) -> Iterator[Deployment]:
    project = copy_example(work / "deploy")
    (project / "mlops.yaml").write_text(
        quick_evaluation((project / "mlops.yaml").read_text())
        + "  profile: {single_row_runs: 20, batch_sizes: [1]}\n"
        + f"deploy:\n  {ENV}: {{target: local, port: {free_port()}, rollout: {ROLLOUT}}}\n"
    )
    watch_aliases(project / ".mlops" / "mlflow.db")
    config = load_config(project)

    run_id = _step(config, lambda reg: train(config, reg).run_id)
    _step(config, lambda reg: compare(config, reg, run_id))
    v1 = _step(config, lambda reg: register(config, reg, run_id, force=True)).version
    # v2: the same model, as register tagged v1 (a deploy's records are what is looked at here)
    store, name = f"sqlite:///{project / '.mlops' / 'mlflow.db'}", config.model.name
    tags = dict(MlflowClient(store, registry_uri=store).get_model_version(name, v1).tags)
    v2 = twin_version(store, name, v1, tags)

    def packaged(version: str) -> Path:
        done = _step(config, lambda reg: package(config, reg, version, build=False))
        return Path(done.context) / "model"

    made = Deployment(config, (v1, v2), (packaged(v1), packaged(v2)))
    try:
        first = _step(config, lambda reg: deploy(config, reg, v1, ENV, "fault-suite", {}))
        if first.status != "serving":
            raise RuntimeError(f"the first deploy did not serve: {first}")
        yield made
    finally:
        made.target.stop()


def _step(config: Config, step: Callable[[MlflowRegistry], T]) -> T:
    """One step in this process, alone (IN_PROCESS), with a registry opened for it: another
    thread's registry moved MLflow's global tracking URI meanwhile."""
    with IN_PROCESS:
        return step(MlflowRegistry.for_config(config, honour_env=False))


def _deploy(version: str) -> tuple[str, ...]:
    return ("deploy", "--version", version, "--env", ENV, "--by", "fault-suite")


def deploy_kills(d: Deployment, tries: int, seed: int) -> list[Outcome]:
    """``tries`` deploys of the version not serving, killed (-9) mid-canary or in the 100 %
    window, then `status` and the same deploy again: each time the served split, the alias,
    deploy.json and the audit log must agree, and a split the dead deploy left be resolved
    with a record saying so."""
    outcomes = []
    for i in range(tries):
        try_seed = seed * 1000 + i
        rng = random.Random(try_seed)
        phase = ("mid-canary", "the 100 % window")[i % 2]
        outcome = Outcome("deploy", f"kill -9 {phase}, then status and deploy again", try_seed)
        new = next(v for v in d.versions if v != d.alias())
        audit = JobFolder(d.project).deploy_audit
        before, lines = d.live(), len(audit_lines(audit))
        verb = Verb(d.project, *_deploy(new))
        step = rng.choice([10, 50]) if phase == "mid-canary" else 100
        verb.wait_for_line(f"step {step} %", 120)
        time.sleep(rng.uniform(0.0, WINDOW_S))  # within the step's window
        killed = verb.kill(signal.SIGKILL)
        outcome.missed = not killed
        call = verb.wait(60)
        left = d.live()
        check(outcome, call)
        ended = "" if killed else f", ended before the kill (exit {call.code})"
        outcome.notes.append(f"v{new} killed at step {step} %{ended}; left {left}")
        status = run_verb(d.project, "status")
        check(outcome, status)
        outcome.contradictions.extend(agreement(d, "after status"))
        if left != before and len(audit_lines(audit)) == lines:
            outcome.contradictions.append(
                f"the dead deploy moved traffic ({before} -> {left}) and no audit line says so"
            )
        again = run_verb(d.project, *_deploy(new))
        check(outcome, again)
        outcome.notes.append(f"status {status.code}, deploy again {again.code}")
        if again.code not in (0, 1):
            outcome.other.append(f"{again.what} exited {again.code}: {again.err.strip()[-200:]}")
        outcome.contradictions.extend(agreement(d, "after the next deploy"))
        if again.code == 0 and d.live() != {new: 100.0}:
            outcome.contradictions.append(f"deploy v{new} exited 0 while {d.live()} serves")
        outcomes.append(outcome)
    return outcomes


def agreement(d: Deployment, when: str) -> list[str]:
    """The live split, the alias, .mlops/deploy.json and the audit log's last line agree."""
    live = d.live()
    if live is None:
        return [f"{when}: no serving process answers"]
    alias, found = d.alias(), []
    job = JobFolder(d.project)
    record = read_record(job.deploy) or {}
    audit = audit_lines(job.deploy_audit)
    if len(live) != 1:
        found.append(f"{when}: the split is left at {live}")
    elif alias not in live:
        found.append(f"{when}: v{next(iter(live))} serves 100 % while the alias is on v{alias}")
    said = positive(record.get("split"))
    if said != live:
        found.append(f"{when}: deploy.json says {record.get('status')} {said}, {live} serves")
    if record.get("status") == "serving" and str(record.get("version")) != alias:
        found.append(f"{when}: deploy.json says v{record.get('version')} serves; alias v{alias}")
    if not audit or audit[-1] != record:
        found.append(f"{when}: the audit log's last line is not deploy.json's record")
    return found


# --- the input log on a full disk ------------------------------------------------------------

ROWS_PER_REQUEST = 20
MONITOR = "monitor: {collect: true, flush_rows: 64, flush_seconds: 0.2}\n"


@contextmanager
def _serving(folder: Path, model: Path, log_dir: Path) -> Iterator[tuple[int, str]]:
    """`mlops-ci serve` of ``model`` logging inputs to ``log_dir``; its output goes to a pipe
    (a log file would hit the file size limit too)."""
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlops_ci",
            "serve",
            "-c",
            str(folder / "mlops.yaml"),
            "--model-dir",
            str(model),
            "--port",
            str(port),
            "--collect",
            "--log-dir",
            str(log_dir),
            "--isolation",
            "off",
        ],  # fmt: skip
        cwd=folder,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    said: list[bytes] = []
    reader = threading.Thread(target=lambda: said.extend(process.stdout or []), daemon=True)
    reader.start()
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while not _ready(url):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(b"".join(said).decode(errors="replace")[-2000:])
            time.sleep(0.1)
        yield process.pid, url
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


def _ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/v2/health/ready", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _limit_file_size(pid: int, limit: int | None) -> None:
    """RLIMIT_FSIZE of a live process (None: unlimited): a write past it fails with EFBIG,
    as on a full disk, after writing what fits."""
    hard = resource.prlimit(pid, resource.RLIMIT_FSIZE)[1]
    resource.prlimit(pid, resource.RLIMIT_FSIZE, (hard if limit is None else limit, hard))


def _post(url: str, rows: list[list[float]], count: int) -> int:
    """``count`` /score requests of the rows; how many were answered 200."""
    answered = 0
    with httpx.Client(base_url=url, timeout=30) as client:
        for _ in range(count):
            answered += client.post("/score", json={"inputs": rows}).status_code == 200
    return answered


def input_log_full_disk(d: Deployment, work: Path, tries: int, seed: int) -> list[Outcome]:
    """Each try: rows logged; the disk fills mid-line (the open segment may grow a few bytes
    more) while requests go on; space comes back and rows are logged again; the disk fills
    again and the service stops while it is full. Every finished segment must end in a newline
    with every line whole JSON, health keep answering, and every row answered be read by `drift`
    or be counted in mlops_input_log_dropped_rows_total: what is neither is a good row lost."""
    folder = copy_example(work / "input-log")
    (folder / "mlops.yaml").write_text((folder / "mlops.yaml").read_text() + MONITOR)
    test = pd.read_csv(folder / "data" / "test.csv").drop(columns=["species"])
    rows = test.head(ROWS_PER_REQUEST).to_numpy(dtype=float).tolist()
    outcomes = []
    for i in range(tries):
        try_seed = seed * 1000 + i
        rng = random.Random(try_seed)
        case = "full disk, space back, full again at shutdown"
        outcome = Outcome("input log", case, try_seed)
        log_dir = work / f"inputs-{try_seed}"
        counts = [rng.randint(10, 40) for _ in range(4)]
        answered, healthy = 0, True
        with _serving(folder, d.models[0], log_dir) as (pid, url):
            for part, count in enumerate(counts):
                if part in (1, 3):  # the disk is full from here, mid-line
                    size = max((p.stat().st_size for p in log_dir.glob("*.open")), default=0)
                    _limit_file_size(pid, size + rng.randint(1, 3000))
                answered += _post(url, rows, count)
                time.sleep(0.6)  # the writer had its turn (flush_seconds 0.2)
                healthy &= _ready(url)
                if part == 1:
                    _limit_file_size(pid, None)  # space comes back
            dropped = _dropped(httpx.get(f"{url}/metrics", timeout=10).text)
        sent = sum(counts) * ROWS_PER_REQUEST
        answered *= ROWS_PER_REQUEST
        if answered != sent:
            outcome.other.append(f"{sent - answered} of {sent} rows not answered 200")
        if not healthy:
            outcome.other.append("/v2/health/ready failed while the log could not write")
        outcome.other.extend(_torn_segments(log_dir))
        current = ("--reference", "data/train.csv", "--current", str(log_dir))
        drift = run_verb(folder, "drift", *current)
        check(outcome, drift)
        read = _drift_rows(folder) if drift.code in (0, 1) else 0
        outcome.lost_rows = max(0, answered - read - int(dropped))
        outcome.notes.append(
            f"{answered} rows answered, drift (exit {drift.code}) read {read}, "
            f"{int(dropped)} counted dropped"
        )
        outcomes.append(outcome)
    return outcomes


def _dropped(metrics: str) -> float:
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        if line.startswith("mlops_input_log_dropped_rows_total")
    )


def _torn_segments(log_dir: Path) -> list[str]:
    """Finished segments that do not end in a newline, or hold a line that is not JSON."""
    import json

    found = []
    for segment in sorted(log_dir.glob("*.jsonl")):
        data = segment.read_bytes()
        if data and not data.endswith(b"\n"):
            found.append(f"{segment.name} ends without a newline")
        bad = 0
        for line in data.splitlines():
            try:
                json.loads(line)
            except ValueError:
                bad += 1
        if bad:
            found.append(f"{segment.name} holds {bad} line(s) that are not JSON")
    return found


def _drift_rows(folder: Path) -> int:
    record: Any = read_record(JobFolder(folder).drift) or {}
    return max((int(f.get("current_rows", 0)) for f in record.get("features", [])), default=0)
