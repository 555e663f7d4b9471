"""The shadow's queue and its process's scoring: rows are handed over off the request's path,
several requests at a time, what does not fit is dropped and counted (rows or bytes), a body
whose contract differs is parsed again by the shadow, and its errors never get out."""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from typing import Any

import numpy as np
import pytest

from mlops_ci.serve import shadow as shadow_module
from mlops_ci.serve import shadowproc
from mlops_ci.serve.model import Prediction
from mlops_ci.serve.payload import Limits, PayloadError
from mlops_ci.serve.shadow import Shadow, ShadowScorer, parse_shadow

LIMITS = Limits(2, ("a", "b"), 100)


class Model:
    """Sums each row; refuses a row starting with "refuse", fails on one starting with "boom"."""

    def __init__(self) -> None:
        self.calls: list[int] = []

    def predict(self, x: Any) -> Prediction:
        self.calls.append(len(x))
        if any(str(row[0]) == "refuse" for row in x):
            raise PayloadError(422, "the model cannot score these values")
        if any(str(row[0]) == "boom" for row in x):
            raise RuntimeError("the shadow's own bug")
        return Prediction(None, np.asarray(x, dtype=np.float64).sum(axis=1, keepdims=True))


class Log:
    def __init__(self) -> None:
        self.lines: list[tuple[str, Any, Any]] = []
        self.rows_dropped = 0

    def submit(self, version: str, request_id: str, x: Any, labels: Any, scores: Any,
               names: tuple[str, ...], shadow: bool) -> None:  # fmt: skip
        assert shadow
        self.lines.append((request_id, x, scores))


def child(model: Model, log: Log) -> Any:
    """The process's scorer without the process (its model and log are these)."""
    shadow = object.__new__(shadowproc._Shadow)
    shadow.model, shadow.version, shadow.limits, shadow.log = model, "2", LIMITS, log
    shadow._dropped_told = 0
    return shadow


class Process:
    """The shadow's process in this thread: the child's scoring on a fake model; ``gate``
    holds each call until set."""

    def __init__(self, gate: threading.Event | None = None) -> None:
        self.model, self.log = Model(), Log()
        self.scorer = child(self.model, self.log)
        self.gate = gate
        self.batches: list[int] = []
        self.closed = False

    def score(self, jobs: list[Any]) -> tuple[dict[str, int], int]:
        if self.gate is not None:
            assert self.gate.wait(10)
        self.batches.append(len(jobs))
        return dict(self.scorer.score(jobs)), self.scorer.log_dropped()

    def close(self) -> None:
        self.closed = True


class Host:
    def __init__(self, limits: Limits = LIMITS, process: Process | None = None) -> None:
        self.limits = limits
        self.process = process or Process()
        self.counted: Counter[str] = Counter()
        self.started = 0
        self.fail_start = False

    def shadow_limits(self, version: str) -> Limits | None:
        return self.limits

    def shadow_process(self, version: str) -> Process:
        self.started += 1
        if self.fail_start:
            raise RuntimeError("the shadow process did not start")
        return self.process

    def shadow_counted(self, version: str, outcome: str, rows: int) -> None:
        self.counted[outcome] += rows

    def shadow_log_dropped(self, rows: int) -> None:
        self.counted["log dropped"] += rows


def settled(scorer: ShadowScorer, seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while scorer.queued_rows() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert scorer.queued_rows() == 0


def rows(*values: Any) -> np.ndarray:
    return np.array([[v, 1.0] for v in values], dtype=object)


@pytest.mark.timeout(30)
def test_queued_requests_go_together_and_each_is_logged_with_its_own_rows(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(shadow_module, "WAKE_S", 60.0)  # woken by the rows alone
    monkeypatch.setattr(shadow_module, "WAKE_ROWS", 20)
    host = Host()
    scorer = ShadowScorer(host, Shadow("2"))
    try:
        for i in range(10):
            x = np.array([[i, 0.0], [i, 1.0]])
            chosen = scorer.chosen("1")
            assert chosen is not None
            scorer.offer(chosen, LIMITS, f"r{i}", x, b"{}")
            if i < 9:
                assert host.process.batches == [], "not woken per request"
        settled(scorer)
    finally:
        scorer.close()
    assert host.process.batches == [10] and host.process.model.calls == [20]
    assert host.counted == {"scored": 20} and host.started == 1 and host.process.closed
    logged = host.process.log.lines
    assert [r for r, _, _ in logged] == [f"r{i}" for i in range(10)]
    for i, (_, x, scores) in enumerate(logged):
        assert x.tolist() == [[i, 0.0], [i, 1.0]] and scores.tolist() == [[float(i)], [i + 1.0]]


@pytest.mark.timeout(30)
def test_the_shadow_takes_its_percent_and_never_a_request_of_its_own_version() -> None:
    scorer = ShadowScorer(Host(), Shadow("2", 30.0))
    scorer._random = random.Random(7)
    taken = sum(scorer.chosen("1") is not None for _ in range(10_000))
    assert 2_800 < taken < 3_200
    assert all(scorer.chosen("2") is None for _ in range(100))  # pinned to the shadow itself
    scorer.set(None)
    assert scorer.chosen("1") is None


@pytest.mark.timeout(30)
def test_a_full_queue_drops_and_counts_rows_instead_of_growing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(shadow_module, "MAX_QUEUED_ROWS", 10)
    monkeypatch.setattr(shadow_module, "WAKE_ROWS", 1)
    gate = threading.Event()
    host = Host(process=Process(gate))
    scorer = ShadowScorer(host, Shadow("2"))
    try:
        scorer.offer(Shadow("2"), LIMITS, "first", np.full((3, 2), 9.0), b"{}")
        deadline = time.monotonic() + 5
        while not scorer._jobs and time.monotonic() < deadline and host.started == 0:
            time.sleep(0.01)  # the first is taken: it waits in the process
        for i in range(8):  # 3 rows each beside the 3 in the process: 2 fit, 6 drop
            scorer.offer(Shadow("2"), LIMITS, f"r{i}", np.full((3, 2), i), b"{}")
        assert scorer.queued_rows() <= 10
        gate.set()
        settled(scorer)
    finally:
        scorer.close()
    assert host.counted["dropped"] == 18 and host.counted["scored"] == 9


@pytest.mark.timeout(30)
def test_the_byte_bound_drops_but_a_large_request_alone_is_taken(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(shadow_module, "MAX_QUEUED_ROWS", 10)
    monkeypatch.setattr(shadow_module, "MAX_QUEUED_BYTES", 1000)
    monkeypatch.setattr(shadow_module, "WAKE_S", 60.0)
    monkeypatch.setattr(shadow_module, "WAKE_ROWS", 1000)
    host = Host()
    scorer = ShadowScorer(host, Shadow("2"))
    try:
        scorer.offer(Shadow("2"), LIMITS, "big", np.zeros((50, 2)), b"x" * 5000)
        scorer.offer(Shadow("2"), LIMITS, "behind", np.zeros((1, 2)), b"x")
        assert host.counted == {"dropped": 1}, "nothing queues behind a large one"
        scorer._wake.set()
        settled(scorer)
        scorer.offer(Shadow("2"), LIMITS, "a", np.zeros((1, 2)), b"x" * 600)
        scorer.offer(Shadow("2"), LIMITS, "b", np.zeros((1, 2)), b"x" * 600)
        scorer._wake.set()
        settled(scorer)
    finally:
        scorer.close()
    assert [r for r, _, _ in host.process.log.lines] == ["big", "a"]
    assert host.counted == {"dropped": 2, "scored": 51}


@pytest.mark.timeout(30)
def test_another_contract_is_parsed_in_the_shadow_and_its_errors_are_counted() -> None:
    other = Limits(1, ("a",), 100)
    host = Host(limits=other)
    host.process.scorer.limits = other
    scorer = ShadowScorer(host, Shadow("2"))
    try:
        scorer.offer(Shadow("2"), LIMITS, "ok", rows(1.0), b'{"inputs": [[7.0]]}')
        scorer.offer(Shadow("2"), LIMITS, "refused", rows(1.0), b'{"inputs": [[1.0, 2.0]]}')
        scorer._wake.set()
        settled(scorer)
    finally:
        scorer.close()
    assert [(r, s.tolist()) for r, _, s in host.process.log.lines] == [("ok", [[7.0]])]
    assert host.counted == {"scored": 1, "refused": 1}


def test_a_batch_the_model_fails_on_is_scored_request_by_request() -> None:
    model, log = Model(), Log()
    jobs = [(f"r{i}", 1, rows(v), None, "score", None) for i, v in enumerate(["1", "boom", "3"])]
    jobs.append(("r3", 1, rows("refuse"), None, "score", None))
    counts = child(model, log).score(jobs)
    assert model.calls[0] == 4 and sorted(model.calls[1:]) == [1, 1, 1, 1]
    assert [r for r, _, _ in log.lines] == ["r0", "r2"]
    assert counts == {"scored": 2, "failed": 1, "refused": 1}


@pytest.mark.timeout(30)
def test_a_process_that_cannot_start_costs_rows_not_requests_and_is_tried_again_later(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(shadow_module, "RETRY_S", 0.3)
    host = Host()
    host.fail_start = True
    scorer = ShadowScorer(host, Shadow("2"))
    try:
        for i in range(3):
            scorer.offer(Shadow("2"), LIMITS, f"r{i}", np.zeros((1, 2)), b"{}")
            scorer._wake.set()
            settled(scorer)
        assert host.counted == {"failed": 3} and host.started == 1, "one try in RETRY_S"
        host.fail_start = False
        time.sleep(0.35)
        scorer.offer(Shadow("2"), LIMITS, "later", np.zeros((1, 2)), b"{}")
        scorer._wake.set()
        settled(scorer)
    finally:
        scorer.close()
    assert host.counted["scored"] == 1 and host.started == 2


def test_parse_shadow_names_what_is_wrong() -> None:
    assert parse_shadow({"version": "2"}, {"1", "2"}) == Shadow("2", 100.0)
    assert parse_shadow({"version": "2", "percent": 12.5}, {"1", "2"}) == Shadow("2", 12.5)
    with pytest.raises(PayloadError, match="'9' is not loaded"):
        parse_shadow({"version": "9"}, {"1", "2"})
    for percent in (0, 101, "50", True):
        with pytest.raises(PayloadError, match="percent"):
            parse_shadow({"version": "2", "percent": percent}, {"1", "2"})
    with pytest.raises(PayloadError, match="send"):
        parse_shadow(["2"], {"2"})
