"""`train` under faults (issue 40): killed (kill -9, SIGTERM) during its command or while it
logs to the registry, with and without the sandbox, then the next verbs; and a registry that
hangs or answers 503 on one call of a train. Against a real `mlflow server` behind a fault
proxy (tests/support/fault_registry.py); one :class:`~tests.support.fault_harness.Outcome` per
try."""

from __future__ import annotations

import dataclasses
import random
import signal
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mlflow import MlflowClient

from tests.support.fault_harness import (
    Outcome,
    Verb,
    check,
    expect,
    leftover_processes,
    read_record,
    run_verb,
    verb_env,
)
from tests.support.fault_registry import (
    HUNG_TIMEOUT_S,
    Server,
    client_of,
    experiment_id,
    fault_project,
)
from tests.support.mlflow_server import Fault, ProxyState, fault_proxy

# An outage's bound, from the first call that hangs or is answered 503 to the exit: one registry
# call's (MLFLOW_HTTP_REQUEST_TIMEOUT + 5 s, docs/reliability.md), and SLACK_S for recording the
# failure on a loaded 2-core machine. A train reaches the registry within BEFORE_REGISTRY_S.
SLACK_S = 5.0
BEFORE_REGISTRY_S = 60.0


def _train_args(marker: str, sleep: float = 0.0) -> tuple[str, ...]:
    return ("train", "--param", f"fault_marker={marker}", "--param", f"fault_sleep={sleep:g}")


# --- train ---------------------------------------------------------------------------------

COMMAND, LOGGING = "the command", "logging to the registry"
COMMAND_SLEEP_S = 1.0  # the training command's fault_sleep: a kill's window in the command


def _first_train(project: Path, marker: str, state: ProxyState) -> int:
    """A train that runs to its end (the run a stale record would name): how many registry
    requests it made once its command had ended, where a kill "while logging" lands. A process,
    not a call here: it starts at once, beside every other scenario's setup."""
    verb = Verb(project, *_train_args(marker))
    verb.wait_until(lambda: (project / "fault-pids" / f"{marker}.done").exists(), 120)
    logged_from = len(state.seen)
    call = verb.wait()
    if call.code != 0:
        raise RuntimeError(f"{call.what} exited {call.code}: {call.err[-2000:]}")
    return max(1, len(state.seen) - logged_from)


def train_kills(
    server: Server, work: Path, seed: int, isolation: str, plan: Sequence[tuple[int, str]]
) -> list[Outcome]:
    """A train of one project killed for each (signal, phase) of ``plan``: during the command
    or while it logs to the registry, each followed by `compare` and `register` (they must
    refuse, or use the killed train's own finished run, never the run before it) and a `train`
    that must finish the job; no process of the command may survive, no run stay RUNNING."""
    client = client_of(server)
    with fault_proxy(server.url) as (proxy, state):
        name = f"fault-train-{isolation}-{seed}"
        project = fault_project(work / name, name, proxy, isolation)
        logging_requests = _first_train(project, f"{name}-first", state)
        return [
            _train_try(
                client, project, state, seed * 1000 + i, sig, phase, logging_requests, isolation
            )
            for i, (sig, phase) in enumerate(plan)
        ]


def _train_try(
    client: MlflowClient,
    project: Path,
    state: ProxyState,
    seed: int,
    sig: int,
    phase: str,
    logging_requests: int,
    isolation: str,
) -> Outcome:
    rng = random.Random(seed)
    marker = f"{project.name}-{seed}"
    marks = project / "fault-pids"
    sig_name = signal.Signals(sig).name
    outcome = Outcome("train", f"{sig_name} during {phase} (isolation {isolation})", seed)
    since_ms = int(time.time() * 1000)
    verb = Verb(project, *_train_args(marker, COMMAND_SLEEP_S))
    if phase == COMMAND:
        verb.wait_until(lambda: (marks / f"{marker}.started").exists(), 120)
        time.sleep(rng.uniform(0.0, COMMAND_SLEEP_S))
    else:
        verb.wait_until(lambda: (marks / f"{marker}.done").exists(), 120)
        base, k = len(state.seen), rng.randint(1, logging_requests)
        verb.wait_until(lambda: len(state.seen) >= base + k, 60)
        outcome.notes.append(f"killed after registry request {k} of {logging_requests}")
    killed = verb.kill(sig)
    outcome.missed = not killed
    call = verb.wait(60)
    outcome.notes.append(f"exit {call.code}" + ("" if killed else ", ended before the kill"))
    outcome.leftovers.extend(leftover_processes(marker))
    check(outcome, call)
    if killed and sig == signal.SIGTERM and call.code != 128 + signal.SIGTERM:
        outcome.other.append(f"SIGTERM ended train with {call.code}, not 143 (recorded failure)")
    nexts = [run_verb(project, "compare"), run_verb(project, "register")]
    check(outcome, *nexts)
    outcome.notes.append(f"compare {nexts[0].code}, register {nexts[1].code}")
    fresh = _finished_runs(client, project, since_ms)
    used = {
        "compare": _named_run(project / ".mlops" / "comparison.json", "candidate", "run_id"),
        "register": _named_run(project / ".mlops" / "register.json", "run_id"),
    }
    acting = ((0, 1), (0,))  # compare acts on a run with exit 0 or 1, register with 0
    for next_call, (verb_name, run_id), acted in zip(nexts, used.items(), acting, strict=True):
        if next_call.code in acted and run_id not in fresh:
            outcome.stale.append(f"{verb_name} used run {run_id}, not the killed train's")
        elif next_call.code not in (0, 1, 2):
            outcome.other.append(f"{next_call.what} exited {next_call.code}")
    outcome.contradictions.extend(_running_runs(client, project, since_ms))
    again = run_verb(project, *_train_args(marker, COMMAND_SLEEP_S))
    check(outcome, again)
    if again.code != 0:
        outcome.other.append(f"the next train exited {again.code}: {again.err.strip()[-200:]}")
    outcome.contradictions.extend(_train_record(client, project))
    return outcome


def _named_run(path: Path, *keys: str) -> str | None:
    record: Any = read_record(path)
    for key in keys:
        record = record.get(key) if isinstance(record, dict) else None
    return str(record) if record else None


def _finished_runs(client: MlflowClient, project: Path, since_ms: int) -> set[str]:
    """Complete, finished runs of the project's experiment started since ``since_ms``."""
    runs = client.search_runs(
        [experiment_id(client, project)], f"attributes.start_time >= {since_ms}", max_results=100
    )
    return {
        r.info.run_id
        for r in runs
        if r.info.status == "FINISHED" and r.data.tags.get("mlops.complete") == "true"
    }


def _running_runs(client: MlflowClient, project: Path, since_ms: int) -> list[str]:
    """Runs started since ``since_ms`` still RUNNING once no process of the project runs."""
    runs = client.search_runs(
        [experiment_id(client, project)],
        f"attributes.status = 'RUNNING' and attributes.start_time >= {since_ms}",
    )
    return [f"run {r.info.run_id} is RUNNING with no process left" for r in runs]


def _train_record(client: MlflowClient, project: Path) -> list[str]:
    """train.json after a train that exited 0: finished, naming a finished run."""
    record = read_record(project / ".mlops" / "train.json") or {}
    run_id = record.get("run_id")
    if record.get("status") != "finished" or not run_id:
        return [f"train.json says {record.get('status')!r} after a train that exited 0"]
    status = client.get_run(str(run_id)).info.status
    return [] if status == "FINISHED" else [f"train.json names run {run_id}, {status}"]


# --- a registry that hangs or answers 503 ----------------------------------------------------

OUTAGES = {
    "runs/create hangs": Fault("POST", r"/runs/create$", "slow:3600", times=1000),
    "503 on log-batch": Fault("POST", r"/runs/log-batch$", "503", times=1000),
}


def registry_outages(server: Server, work: Path, seed: int) -> list[Outcome]:
    """`train` of one project while the registry hangs or answers 503 on one call, each case in
    turn: exit 3 within one registry call's bound of the first faulty answer, and no process
    left; then, the registry answering again, a train that finishes the job, with no run of them
    all left RUNNING (said by the last case)."""
    client = client_of(server)
    with fault_proxy(server.url) as (proxy, state):
        name = f"fault-outage-{seed}"
        project = fault_project(work / name, name, proxy)
        since_ms = int(time.time() * 1000)
        outcomes = [
            _outage(project, state, case, f"{name}-{i}", seed * 1000 + i)
            for i, case in enumerate(OUTAGES)
        ]
        last = outcomes[-1]
        expect(last, run_verb(project, *_train_args(f"{name}-{len(OUTAGES) - 1}")), 0)
        last.contradictions.extend(_running_runs(client, project, since_ms))
        last.contradictions.extend(_train_record(client, project))
    return outcomes


def _outage(project: Path, state: ProxyState, case: str, marker: str, seed: int) -> Outcome:
    outcome = Outcome("outage", case, seed)
    bound = HUNG_TIMEOUT_S + 5.0 + SLACK_S
    fault = dataclasses.replace(OUTAGES[case])  # a copy: a fault counts down as it is used
    state.faults = [fault]
    env = verb_env(MLFLOW_HTTP_REQUEST_TIMEOUT=f"{HUNG_TIMEOUT_S:g}")
    verb = Verb(project, *_train_args(marker), env=env)
    verb.wait_until(lambda: fault.times < OUTAGES[case].times, BEFORE_REGISTRY_S)
    hit = time.monotonic()  # the first call that hangs or is answered 503
    call = verb.wait(BEFORE_REGISTRY_S + bound)
    state.faults = []
    check(outcome, call)
    after = verb.started + call.seconds - hit
    outcome.notes.append(f"exit {call.code} {after:.1f} s after the fault (bound {bound:g} s)")
    if call.code != 3:
        outcome.other.append(f"{call.what} exited {call.code}: {call.err.strip()[-200:]}")
    if after > bound:
        outcome.other.append(f"{call.what} ended {after:.1f} s after the fault: over {bound:g} s")
    outcome.leftovers.extend(leftover_processes(marker))
    return outcome
