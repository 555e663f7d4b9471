"""Issue 40's fault campaign: every scenario of ``fault_registry.py`` and ``fault_serving.py``
run side by side against one real `mlflow server` and one local deployment, each with its
seeded tries, and the figures of what they broke. The pytest suite (tests/integration/
test_faults.py) runs it with a few tries; ``benchmarks/faults.py`` with 20 per verb.

Scenarios wait on processes, servers and rollout windows far more than they compute, so they
share the time: one thread each (two for train, one per isolation)."""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.support.fault_harness import FIGURES, Outcome
from tests.support.fault_registry import Server, promote_faults, register_kills, registry_server
from tests.support.fault_serving import Deployment, deploy_kills, deployment, input_log_full_disk
from tests.support.fault_train import COMMAND, LOGGING, registry_outages, train_kills

GROUPS = ("train", "register", "promote", "deploy", "outage", "input log")


@dataclass(frozen=True)
class Tries:
    """Seeded tries per scenario group: kills of each verb (train's through TRAIN_CASES; promote's
    are followed by as many pairs of concurrent promotes and one hung and one lost alias
    write), the registry outage cases (each try runs them all), and the input log's full disk
    (each try: full, space back, full again at shutdown)."""

    train: int = 20
    register: int = 20
    promote: int = 20
    deploy: int = 20
    outage: int = 1
    input_log: int = 2


# Every (signal, phase, train.isolation) of a killed train, in the order tries take them: the
# first (what the pytest suite runs) is a kill -9 while the run is logged (the run must not stay
# RUNNING, nor the run before it be used) without the sandbox, the second a SIGTERM during the
# command in it (exit 143, the command's processes ended, recorded).
KILL, TERM = signal.SIGKILL, signal.SIGTERM
TRAIN_CASES = (
    (KILL, LOGGING, "off"),
    (TERM, COMMAND, "auto"),
    (KILL, COMMAND, "off"),
    (TERM, LOGGING, "auto"),
    (KILL, COMMAND, "auto"),
    (TERM, COMMAND, "off"),
    (KILL, LOGGING, "auto"),
    (TERM, LOGGING, "off"),
)


def train_plan(tries: int, isolation: str) -> list[tuple[int, str]]:
    """(signal, phase) of the tries with train.isolation ``isolation`` among ``tries``."""
    cases = [TRAIN_CASES[i % len(TRAIN_CASES)] for i in range(tries)]
    return [(sig, phase) for sig, phase, where in cases if where == isolation]


def _both(*jobs: Callable[[], list[Outcome]]) -> list[Outcome]:
    """Run ``jobs`` side by side; their outcomes in order."""
    with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
        futures = [pool.submit(job) for job in jobs]
        return [o for f in futures for o in f.result()]


def _trains(server: Server, work: Path, tries: int, seed: int) -> list[Outcome]:
    """One project without the sandbox (train.isolation off: only mlops-ci can end the
    command's processes) and one in it, side by side."""
    return _both(
        *[
            lambda i=i, where=where: train_kills(
                server, work, seed + i, where, train_plan(tries, where)
            )
            for i, where in enumerate(("off", "auto"))
            if train_plan(tries, where)
        ]
    )


def _outages(server: Server, work: Path, tries: int, seed: int) -> list[Outcome]:
    jobs = [lambda i=i: registry_outages(server, work, seed * 1000 + i) for i in range(tries)]
    return _both(*jobs)


@contextmanager
def campaign(work: Path, tries: Tries, seed: int) -> Iterator[dict[str, Future[list[Outcome]]]]:
    """Start every scenario group (one `mlflow server` and one deployment shared) and yield
    their futures by group; on leaving, wait for them all and stop what they share."""
    pool = ThreadPoolExecutor(max_workers=len(GROUPS) + 1)
    with ExitStack() as stack:
        stack.callback(pool.shutdown)
        setup = deployment(work / "serving")
        deployed: Future[Deployment] = pool.submit(setup.__enter__)  # set up beside the server

        def leave() -> None:  # stops the local service once the setup is done, however it went
            if deployed.exception() is None:
                setup.__exit__(None, None, None)

        stack.callback(leave)
        server = stack.enter_context(registry_server(work / "server"))

        def group(count: int, job: Callable[[], list[Outcome]]) -> Future[list[Outcome]]:
            return pool.submit(job if count else list)

        served = deployed.result
        first: Future[tuple[str, str]] = Future()  # register's model: promote's too
        model = first.result

        def registering() -> list[Outcome]:
            try:
                return register_kills(
                    server, work, tries.register, seed, lambda *got: first.set_result(got)
                )
            finally:
                if not first.done():
                    first.set_exception(RuntimeError("the register scenario registered nothing"))

        futures = {
            "train": group(tries.train, lambda: _trains(server, work, tries.train, seed)),
            "register": group(tries.register + tries.promote, registering),
            "promote": group(
                tries.promote, lambda: promote_faults(server, work, tries.promote, seed, model)
            ),
            "outage": group(tries.outage, lambda: _outages(server, work, tries.outage, seed)),
            "deploy": group(tries.deploy, lambda: deploy_kills(served(), tries.deploy, seed)),
            "input log": group(
                tries.input_log,
                lambda: input_log_full_disk(served(), work, tries.input_log, seed),
            ),
        }
        try:
            yield futures
        finally:
            for future in futures.values():
                future.exception()  # wait: what they share is stopped only after them


def figures(outcomes: dict[str, list[Outcome]]) -> str:
    """A table of the figures per group and in all (Markdown, as benchmarks/README.md)."""
    keys = list(FIGURES)
    head = "| verb | tries | " + " | ".join(FIGURES[k] for k in keys) + " |"
    rows = [head, "|" + " --- |" * (len(keys) + 2)]
    every = [o for group in outcomes.values() for o in group]
    for name, group in [*outcomes.items(), ("all", every)]:
        counts = [sum(o.count(k) for o in group) for k in keys]
        rows.append(f"| {name} | {len(group)} | " + " | ".join(str(c) for c in counts) + " |")
    missed = {name: sum(o.missed for o in group) for name, group in outcomes.items()}
    said = ", ".join(f"{name} {n}" for name, n in missed.items() if n) or "none"
    return "\n".join(rows) + f"\nkills that came after the process had ended: {said}"
