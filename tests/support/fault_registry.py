"""The registry verbs under faults (issue 40): `register` and `promote` killed (-9) at seeded
points, pairs of concurrent promotes, an alias write that hangs and one whose answers are lost,
each against a real `mlflow server` behind its own fault proxy; and what every registry scenario
shares: the server (its store keeping the alias history) and a project marked for faults. Each
scenario returns one :class:`~tests.support.fault_harness.Outcome` per try."""

from __future__ import annotations

import random
import signal
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from mlflow import MlflowClient

from mlops_ci.config.types import load_config
from mlops_ci.registry import TAG_VERDICT
from mlops_ci.registry.mlflow import MlflowRegistry
from mlops_ci.steps.compare import compare
from mlops_ci.steps.promote import promote
from mlops_ci.steps.register import register
from mlops_ci.steps.train import train
from tests.support.fault_harness import (
    IN_PROCESS,
    Outcome,
    Verb,
    check,
    expect,
    promotion_contradictions,
    quick_evaluation,
    read_record,
    run_verb,
    twin_version,
    verb_env,
    watch_aliases,
)
from tests.support.mlflow_server import Fault, ProxyState, fault_proxy, mlflow_server
from tests.support.store import copy_example

# What a training command of the fault projects does besides training: it says when it started
# and when it ended (files under fault-pids/), starts a helper process that would outlive a
# killed mlops-ci if nothing ended it, and sleeps `fault_sleep` seconds (a kill's window).
_PROLOGUE = """import json as _json, os as _os, subprocess as _sp, sys as _sys, time as _time
from pathlib import Path as _Path
_fault = _json.loads(_os.environ.get("MLOPS_PARAMS", "{}"))
_marks = _Path("fault-pids")
_marks.mkdir(exist_ok=True)
(_marks / (str(_fault.get("fault_marker")) + ".started")).write_text(str(_os.getpid()))
_helper = _sp.Popen([_sys.executable, "-c", "import time; time.sleep(300)"])
_time.sleep(float(_fault.get("fault_sleep", 0)))
"""
_EPILOGUE = """
_helper.kill()
_helper.wait()
(_marks / (str(_fault.get("fault_marker")) + ".done")).write_text(str(_os.getpid()))
"""
HUNG_TIMEOUT_S = 2.0  # MLFLOW_HTTP_REQUEST_TIMEOUT where a registry call is made to hang
ALIAS_WRITE = r"/registered-models/alias$"


@dataclass(frozen=True)
class Server:
    url: str
    db: Path  # its SQLite store, whose alias writes are kept (faults.watch_aliases)


@contextmanager
def registry_server(folder: Path) -> Iterator[Server]:
    """A real `mlflow server` whose store keeps the history of every alias."""
    with mlflow_server(folder) as url:
        watch_aliases(folder / "mlflow.db")
        yield Server(url, folder / "mlflow.db")


def fault_project(dest: Path, name: str, tracking_uri: str, isolation: str = "auto") -> Path:
    """The iris example as model ``name`` on ``tracking_uri``, its training command marked
    (train.params fault_marker and fault_sleep) and run with train.isolation ``isolation``."""
    root = copy_example(dest)
    script = root / "train.py"
    script.write_text(_PROLOGUE + script.read_text() + _EPILOGUE)
    text = quick_evaluation((root / "mlops.yaml").read_text())
    text = text.replace("name: iris-classifier", f"name: {name}")
    text = text.replace('"sqlite:///.mlops/mlflow.db"', f'"{tracking_uri}"')
    text = text.replace("n_estimators: 50}", 'n_estimators: 50, fault_marker: "", fault_sleep: 0}')
    text = text.replace("\ntrain:\n", f"\ntrain:\n  isolation: {isolation}\n")
    (root / "mlops.yaml").write_text(text)
    return root


def client_of(server: Server) -> MlflowClient:
    return MlflowClient(server.url, registry_uri=server.url)


def experiment_id(client: MlflowClient, project: Path) -> str:
    found = client.get_experiment_by_name(load_config(project).registry.experiment)
    return str(found.experiment_id) if found is not None else ""


# --- register ------------------------------------------------------------------------------


def register_kills(
    server: Server,
    work: Path,
    tries: int,
    seed: int,
    first: Callable[[str, str], None] = lambda name, version: None,
) -> list[Outcome]:
    """`register` killed (-9) after a seeded number of registry requests, then run again: one
    version for the run, `candidate` on it, register.json naming both. ``first`` hears the
    model and its first version, registered here (the promote scenario's model)."""
    client = client_of(server)
    with fault_proxy(server.url) as (proxy, state):
        name = f"fault-register-{seed}"
        project = fault_project(work / name, name, proxy)

        def candidate(marker: str) -> str:
            """A trained and compared run."""
            with IN_PROCESS:
                config = load_config(project)
                reg = MlflowRegistry.for_config(config, honour_env=False)
                run = train(config, reg, overrides={"fault_marker": marker})
                compare(config, reg, run.run_id)
                return run.run_id

        with IN_PROCESS:  # the first register, here: how many registry requests one makes
            config = load_config(project)
            reg = MlflowRegistry.for_config(config, honour_env=False)
            run_id, base = candidate(f"{name}-first"), len(state.seen)
            first(name, register(config, reg, run_id).version)
            requests = max(1, len(state.seen) - base)
        outcomes = []
        for i in range(tries):
            try_seed = seed * 1000 + i
            run_id = candidate(f"{name}-{try_seed}")
            outcome = Outcome("register", "kill -9, then register again", try_seed)
            k = random.Random(try_seed).randint(1, requests)
            outcome.notes.append(f"killed after registry request {k} of {requests}")
            _kill_after(project, state, k, ("register",), outcome)
            again = run_verb(project, "register")
            check(outcome, again)
            if again.code != 0:
                outcome.other.append(f"the next register exited {again.code}")
            outcome.contradictions.extend(_registration(client, project, name, run_id))
            outcomes.append(outcome)
        return outcomes


def _kill_after(
    project: Path, state: ProxyState, k: int, args: tuple[str, ...], outcome: Outcome
) -> None:
    """Run `mlops-ci ARGS` and kill -9 it once the proxy answered ``k`` of its requests."""
    base = len(state.seen)
    verb = Verb(project, *args)
    verb.wait_until(lambda: len(state.seen) >= base + k, 120)
    killed = verb.kill(signal.SIGKILL)
    outcome.missed = not killed
    call = verb.wait(60)
    check(outcome, call)
    outcome.notes.append(f"exit {call.code}" + ("" if killed else ", ended before the kill"))


def _registration(client: MlflowClient, project: Path, name: str, run_id: str) -> list[str]:
    versions = client.search_model_versions(f"name = '{name}' and run_id = '{run_id}'")
    if len(versions) != 1:
        return [f"run {run_id} has {len(versions)} versions"]
    number = str(versions[0].version)
    found = []
    holder = str(client.get_model_version_by_alias(name, "candidate").version)
    if holder != number:
        found.append(f"`candidate` is on v{holder}, the run's version is v{number}")
    record = read_record(project / ".mlops" / "register.json") or {}
    if (str(record.get("version")), record.get("run_id")) != (number, run_id):
        found.append(f"register.json names v{record.get('version')} of {record.get('run_id')}")
    return found


# --- promote -------------------------------------------------------------------------------


class Promotions:
    """One model with versions to promote (made straight in the registry, all passed), and
    the check of its promotion records against the store's alias history."""

    def __init__(self, server: Server, work: Path, name: str, first: str, proxy: str) -> None:
        self.server, self.client = server, client_of(server)
        self.said: set[str] = set()
        self.name, self.first = name, first
        self.project = fault_project(work / f"{name}-promote", name, proxy)

    def fresh(self) -> str:
        return twin_version(self.server.url, self.name, self.first, {TAG_VERDICT: "pass"})

    def holder(self) -> str | None:
        try:
            return str(self.client.get_model_version_by_alias(self.name, "production").version)
        except Exception:  # no alias yet
            return None

    def tags(self, version: str) -> dict[str, str]:
        return dict(self.client.get_model_version(self.name, version).tags)

    def contradictions(self) -> list[str]:
        """What the records get wrong now that no earlier check said: a try is charged only
        with what it broke, not with what an earlier try left."""
        versions = {
            str(v.version): dict(v.tags)
            for v in self.client.search_model_versions(f"name = '{self.name}'")
        }
        found = promotion_contradictions(self.server.db, versions, self.name, "production")
        new = [line for line in found if line not in self.said]
        self.said.update(new)
        return new


def _promote(version: str, why: str) -> tuple[str, ...]:
    return ("promote", "--version", version, "--reason", why, "--by", "fault-suite")


def promote_faults(
    server: Server, work: Path, tries: int, seed: int, first: Callable[[], tuple[str, str]]
) -> list[Outcome]:
    """`promote` killed (-9) after a seeded number of registry requests, then promoted again
    (the same version or another); ``tries`` pairs of concurrent promotes; an alias write that
    hangs and one whose answers are lost. Every time, each version's records against the
    store's alias history. The model is ``first()``'s (name, version): its versions are made
    from that one, nothing is trained."""
    outcomes = []
    with fault_proxy(server.url) as (proxy, state):
        model = Promotions(server, work, *first(), proxy)
        with IN_PROCESS:  # the first promote, here: how many registry requests one makes
            config = load_config(model.project)
            reg = MlflowRegistry.for_config(config, honour_env=False)
            base = len(state.seen)
            promote(config, reg, model.first, "fault-suite", "first")
            requests = max(1, len(state.seen) - base)
        for i in range(tries):
            try_seed = seed * 1000 + i
            rng = random.Random(try_seed)
            target, then = model.fresh(), rng.choice(["the same version", "another version"])
            outcome = Outcome("promote", f"kill -9, then promote {then}", try_seed)
            k = rng.randint(1, requests)
            outcome.notes.append(f"v{target} killed after registry request {k} of {requests}")
            _kill_after(model.project, state, k, _promote(target, "killed"), outcome)
            after = target if then == "the same version" else model.fresh()
            again = run_verb(model.project, *_promote(after, "again"))
            expect(outcome, again, 0)
            outcome.contradictions.extend(model.contradictions())
            outcomes.append(outcome)
        for i in range(tries):
            outcomes.append(_concurrent(model, seed * 1000 + 500 + i))
        outcomes.append(_hung_alias_write(model, state, seed))
        outcomes.append(_lost_alias_answers(model, state, seed))
    return outcomes


def _concurrent(model: Promotions, seed: int) -> Outcome:
    outcome = Outcome("promote", "two promotes at once", seed)
    pair = [model.fresh(), model.fresh()]
    verbs = [Verb(model.project, *_promote(v, "race")) for v in pair]
    for verb in verbs:
        expect(outcome, verb.wait(), 0)
    outcome.notes.append(f"v{pair[0]} and v{pair[1]}; v{model.holder()} holds the alias")
    outcome.contradictions.extend(model.contradictions())
    return outcome


def _hung_alias_write(model: Promotions, state: ProxyState, seed: int) -> Outcome:
    """Every alias write held longer than the bound: exit 3 with no promoted record (the
    writes land after the process gave up), then a promote that reconciles them."""
    outcome = Outcome("promote", "the alias write hangs", seed)
    target, hold = model.fresh(), HUNG_TIMEOUT_S + 7.0
    state.faults = [Fault("POST", ALIAS_WRITE, f"slow:{hold:g}", times=1000)]
    env = verb_env(MLFLOW_HTTP_REQUEST_TIMEOUT=f"{HUNG_TIMEOUT_S:g}")
    call = run_verb(model.project, *_promote(target, "hung"), env=env)
    holder, tags = model.holder(), model.tags(target)
    check(outcome, call)
    outcome.notes.append(f"exit {call.code} in {call.seconds:.1f} s")
    if call.code == 3 and "mlops.promoted.production.at" in tags and holder != target:
        outcome.contradictions.append(f"exit 3, yet v{target} carries a promoted record")
    elif call.code == 3 and holder == target:
        outcome.contradictions.append(f"exit 3 while the alias moved to v{target}")
    elif call.code == 0 and holder != target:
        outcome.contradictions.append(f"exit 0 while the alias is on v{holder}, not v{target}")
    elif call.code not in (0, 3):
        outcome.other.append(f"{call.what} exited {call.code}")
    state.faults = []
    time.sleep(hold + 1.0)  # the held writes land now, with no promote running
    expect(outcome, run_verb(model.project, *_promote(target, "again")), 0)
    outcome.contradictions.extend(model.contradictions())
    return outcome


def _lost_alias_answers(model: Promotions, state: ProxyState, seed: int) -> Outcome:
    """Every alias write done but its answer lost (503 after the write): the alias moved, so
    promote must not say it failed."""
    outcome = Outcome("promote", "the alias write's answers are lost", seed)
    target = model.fresh()
    state.faults = [Fault("POST", ALIAS_WRITE, "lose", times=1000)]
    env = verb_env(MLFLOW_HTTP_REQUEST_MAX_RETRIES="1", MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR="0")
    call = run_verb(model.project, *_promote(target, "lost"), env=env)
    state.faults = []
    check(outcome, call)
    outcome.notes.append(f"exit {call.code}")
    if model.holder() == target and call.code != 0:
        outcome.contradictions.append(f"exit {call.code} while the alias moved to v{target}")
    outcome.contradictions.extend(model.contradictions())
    return outcome
