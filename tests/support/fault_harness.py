"""The fault harness of issue 40: real `mlops-ci` processes killed (kill -9, SIGTERM) at seeded
points or cut off from the registry, and the checks that what they leave behind is true.

A check never trusts a record to judge a record: the registry's own store says where an alias
went (a SQLite trigger keeps every alias write in commit order, :func:`watch_aliases`), /proc
says which processes of a training command still run (every process it starts carries a marker
in its environment, :func:`marked_processes`), the serving process's admin API says the live
split. The scenarios are in ``fault_registry.py`` (train, register, promote, registry outages)
and ``fault_serving.py`` (deploy, the input log on a full disk); ``faults.py`` runs them all at
once, for the pytest suite and ``benchmarks/faults.py``.
"""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mlflow
from mlflow import MlflowClient

# The scenarios run side by side in threads, but the steps some of them call in this process
# (to set a project up quickly) share MLflow's global tracking URI and os.environ: one at a time.
IN_PROCESS = threading.RLock()

# What `Outcome` counts, in the order the "Done when" names them (and one more: an
# exit code or a time bound that is not what the verb promises).
FIGURES = {
    "contradictions": "records contradicting the registry",
    "stale": "stale runs used",
    "leftovers": "training processes left running",
    "exits4": "exits 4 (or a traceback)",
    "lost_rows": "good input-log rows lost",
    "other": "other broken promises (exit code, time bound)",
}


@dataclass
class Outcome:
    """One try of one scenario: what was done to which verb, and every figure it broke."""

    verb: str
    case: str
    seed: int
    notes: list[str] = field(default_factory=list)  # what happened, for the report
    contradictions: list[str] = field(default_factory=list)
    stale: list[str] = field(default_factory=list)
    leftovers: list[str] = field(default_factory=list)
    exits4: list[str] = field(default_factory=list)
    lost_rows: int = 0
    other: list[str] = field(default_factory=list)
    missed: bool = False  # the process ended before its kill: a try of the next verb only

    def count(self, figure: str) -> int:
        value = getattr(self, figure)
        return value if isinstance(value, int) else len(value)

    def problems(self) -> list[str]:
        found = [
            f"{FIGURES[k]}: {x}" for k in FIGURES if k != "lost_rows" for x in getattr(self, k)
        ]
        if self.lost_rows:
            found.append(f"{FIGURES['lost_rows']}: {self.lost_rows}")
        return found

    def __str__(self) -> str:
        said = "; ".join(self.problems()) or "ok"
        return f"{self.verb} / {self.case} (seed {self.seed}): {said} [{'; '.join(self.notes)}]"


def failures(outcomes: Iterable[Outcome]) -> str:
    """Every try that broke a figure, one per line (empty when none did): an assert message."""
    return "\n".join(str(o) for o in outcomes if o.problems())


# --- mlops-ci processes ----------------------------------------------------------------------


@dataclass(frozen=True)
class Call:
    """How one `mlops-ci` process ended."""

    args: tuple[str, ...]
    code: int
    out: str
    err: str
    seconds: float

    @property
    def what(self) -> str:
        return f"`mlops-ci {' '.join(self.args)}`"


def verb_env(**extra: str) -> dict[str, str]:
    """This environment without any MLFLOW_* setting (the project's mlops.yaml says where the
    registry is), plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    return {**env, **extra}


class Verb:
    """One `mlops-ci VERB` process of a project, its output read line by line as it comes."""

    def __init__(self, project: Path, *args: str, env: dict[str, str] | None = None) -> None:
        self.args = args
        self.started = time.monotonic()
        self.popen = subprocess.Popen(
            [sys.executable, "-m", "mlops_ci", *args, "-c", str(project)],
            cwd=project,
            env=env if env is not None else verb_env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,  # a signal to this process alone, as a CI runner's kill
        )
        self.out: list[str] = []
        self.err: list[str] = []
        self._readers = [
            threading.Thread(target=self._read, args=(self.popen.stdout, self.out), daemon=True),
            threading.Thread(target=self._read, args=(self.popen.stderr, self.err), daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    @staticmethod
    def _read(stream: Any, into: list[str]) -> None:
        for line in stream:
            into.append(line)

    def said(self, prefix: str) -> bool:
        return any(line.startswith(prefix) for line in list(self.out))

    def wait_for_line(self, prefix: str, timeout: float) -> bool:
        """Wait until the process prints a line starting with ``prefix``."""
        return self.wait_until(lambda: self.said(prefix), timeout)

    def wait_until(self, ready: Callable[[], bool], timeout: float) -> bool:
        """Poll ``ready`` every 5 ms while the process runs; False once it ended or timed out."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.popen.poll() is None:
            if ready():
                return True
            time.sleep(0.005)
        return False

    def kill(self, sig: int) -> bool:
        """``sig`` to this process alone; False when it had ended already."""
        if self.popen.poll() is not None:
            return False
        os.kill(self.popen.pid, sig)
        return True

    def wait(self, timeout: float = 240) -> Call:
        try:
            code = self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            code = self.popen.wait(10)
            self.err.append(f"[fault harness: killed after {timeout:g} s]\n")
        for reader in self._readers:
            reader.join(10)
        seconds = time.monotonic() - self.started
        call = Call(self.args, code, "".join(self.out), "".join(self.err), seconds)
        if os.environ.get("MLOPS_FAULT_TRACE"):  # each process as it ends: where time goes
            print(f"[{time.strftime('%T')}] {call.what}: exit {code} in {seconds:.1f} s")
        return call


def run_verb(project: Path, *args: str, env: dict[str, str] | None = None) -> Call:
    return Verb(project, *args, env=env).wait()


def crashed(call: Call) -> list[str]:
    """An exit 4 (an internal error) or a traceback is never a verb's answer, whatever it met."""
    found = []
    if call.code == 4:
        lines = call.err.strip().splitlines() or ["no output"]
        said = [line for line in lines if line.startswith("error:")] or lines[-1:]
        found.append(f"{call.what} exited 4: {said[0][:200]}")
    if "Traceback (most recent call last)" in call.err + call.out:
        found.append(f"{call.what} printed a traceback")
    return found


def check(outcome: Outcome, *calls: Call) -> None:
    for call in calls:
        outcome.exits4.extend(crashed(call))


def expect(outcome: Outcome, call: Call, code: int) -> None:
    check(outcome, call)
    if call.code != code:
        outcome.other.append(f"{call.what} exited {call.code}: {call.err.strip()[-200:]}")


def twin_version(uri: str, name: str, version: str, tags: dict[str, str]) -> str:
    """A new version of ``name`` in the registry at ``uri`` holding ``version``'s model (its
    source and run), tagged ``tags``: versions to promote or deploy without training each.
    MLflow looks the logged model up through its global tracking URI: set here, IN_PROCESS,
    and os.environ put back after (MLflow writes the URI there too: left, it would send every
    later registry of this pytest worker to this suite's server, gone by then)."""
    keys = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")
    with IN_PROCESS:
        before = {k: os.environ.get(k) for k in keys}
        try:
            mlflow.set_tracking_uri(uri)
            mlflow.set_registry_uri(uri)
            client = MlflowClient(uri, registry_uri=uri)
            of = client.get_model_version(name, version)
            source = str(of.source)
            model_id = source.removeprefix("models:/") if source.startswith("models:/m-") else None
            made = client.create_model_version(
                name, source, of.run_id, tags=tags, model_id=model_id
            )
        finally:
            for key, was in before.items():
                if was is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = was
    return str(made.version)


def quick_evaluation(config_text: str) -> str:
    """The iris example's mlops.yaml without the work no fault scenario looks at: slices and
    permutation importance (seconds of every train and compare)."""
    return re.sub(r"\n  slices: .*\n", "\n  importance: {enabled: false}\n", config_text)


# --- processes of a training command ---------------------------------------------------------


def marked_processes(marker: str) -> list[int]:
    """Live processes whose environment holds ``marker`` as a JSON string (a training command
    and anything it started: each inherits MLOPS_PARAMS, which carries it); the PID namespace
    of a sandbox hides nothing from /proc here."""
    needle = json.dumps(marker).encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            text = (entry / "environ").read_bytes()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if needle in text and state != "Z":
            found.append(int(entry.name))
    return found


def leftover_processes(marker: str, grace: float = 5.0) -> list[str]:
    """The processes of a training command still running ``grace`` seconds after mlops-ci was
    killed; they are killed here once counted, so that one try cannot spill into the next."""
    deadline = time.monotonic() + grace
    while (alive := marked_processes(marker)) and time.monotonic() < deadline:
        time.sleep(0.1)
    said = []
    for pid in alive:
        try:
            cmd = (Path("/proc") / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ")
            os.kill(pid, signal.SIGKILL)
        except OSError:
            continue
        said.append(f"pid {pid} ({cmd.decode(errors='replace').strip()[:80]}) still running")
    return said


# --- the registry's own history of aliases ---------------------------------------------------

_HISTORY = """
CREATE TABLE IF NOT EXISTS fault_alias_history (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT, alias TEXT, version INTEGER);
CREATE TRIGGER IF NOT EXISTS fault_alias_insert AFTER INSERT ON registered_model_aliases
BEGIN INSERT INTO fault_alias_history (name, alias, version)
      VALUES (NEW.name, NEW.alias, NEW.version); END;
CREATE TRIGGER IF NOT EXISTS fault_alias_update AFTER UPDATE ON registered_model_aliases
BEGIN INSERT INTO fault_alias_history (name, alias, version)
      VALUES (NEW.name, NEW.alias, NEW.version); END;
CREATE TRIGGER IF NOT EXISTS fault_alias_delete AFTER DELETE ON registered_model_aliases
BEGIN INSERT INTO fault_alias_history (name, alias, version)
      VALUES (OLD.name, OLD.alias, NULL); END;
"""


def watch_aliases(db: Path) -> None:
    """Have the MLflow store at ``db`` (SQLite) keep every alias write in commit order: the true
    history that promotion and deploy records are held against."""
    with sqlite3.connect(db, timeout=30) as conn:
        conn.executescript(_HISTORY)


def alias_history(db: Path, name: str, alias: str) -> list[str | None]:
    """The versions ``alias`` of ``name`` pointed at, in order, repeats folded (None: deleted)."""
    with sqlite3.connect(db, timeout=30) as conn:
        rows = conn.execute(
            "SELECT version FROM fault_alias_history WHERE name = ? AND alias = ? ORDER BY seq",
            (name, alias),
        ).fetchall()
    held: list[str | None] = []
    for (version,) in rows:
        value = None if version is None else str(version)
        if not held or held[-1] != value:
            held.append(value)
    return held


def promotion_contradictions(
    db: Path, versions: dict[str, dict[str, str]], name: str, alias: str
) -> list[str]:
    """Where the ``mlops.promoted.ALIAS.*`` / ``mlops.replaced.ALIAS.*`` tags of ``versions``
    (number -> tags) disagree with where the alias really went: a version that lost the alias
    names the version that took it (its last loss), one that never lost it names none, one that
    never held it has no promoted record, and the holder has one."""
    held = alias_history(db, name, alias)
    taker: dict[str, str | None] = {}  # each version's last loss of the alias: to whom
    for before, after in zip(held, held[1:], strict=False):
        if before is not None:
            taker[before] = after
    holder = held[-1] if held else None
    found = []
    for number, tags in sorted(versions.items(), key=lambda kv: int(kv[0])):
        by = tags.get(f"mlops.replaced.{alias}.by_version")
        promoted = tags.get(f"mlops.promoted.{alias}.at")
        if by is not None and number not in taker:
            found.append(f"v{number} says the alias went to v{by}, but it never lost it")
        elif by is not None and by != taker[number]:
            found.append(f"v{number} says the alias went to v{by}; it went to v{taker[number]}")
        elif by is None and number in taker and number != holder:
            found.append(f"v{number} lost the alias to v{taker[number]} with no replaced record")
        if promoted is not None and number not in held:
            found.append(f"v{number} has a promoted record but never held the alias")
    if holder is not None:
        tags = versions.get(holder, {})
        promoted = tags.get(f"mlops.promoted.{alias}.at")
        replaced = tags.get(f"mlops.replaced.{alias}.at")
        if promoted is None:
            found.append(f"v{holder} holds the alias with no promoted record")
        elif replaced is not None and replaced > promoted:
            found.append(f"v{holder} holds the alias; its replaced record is newer than promoted")
    return found


# --- records on disk ---------------------------------------------------------------------------


def read_record(path: Path) -> dict[str, Any] | None:
    """A JSON record, None when absent or not an object (a torn record is a finding too)."""
    try:
        data = json.loads(path.read_text("utf-8"))
    except FileNotFoundError:
        return None
    except ValueError:
        return {"_unreadable": str(path)}
    return data if isinstance(data, dict) else None


def audit_lines(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    lines = []
    for text in path.read_text("utf-8").splitlines():
        try:
            lines.append(json.loads(text))
        except ValueError:
            lines.append({"_unreadable": text[:80]})
    return lines


def positive(split: dict[str, Any] | None) -> dict[str, float]:
    """The versions of a split that take traffic."""
    return {str(k): float(v) for k, v in (split or {}).items() if float(v) > 0}
