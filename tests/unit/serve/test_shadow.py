"""The shadow's queue: it scores what it is offered off the request's path, several requests in
one model call; drops and counts what does not fit (rows or bytes), re-parses a body its
contract differs on, and never lets its errors out."""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from typing import Any

import numpy as np
import pytest

from mlops_ci.serve import shadow as shadow_module
from mlops_ci.serve.model import Prediction
from mlops_ci.serve.payload import Limits, PayloadError
from mlops_ci.serve.shadow import Shadow, ShadowScorer, parse_shadow

LIMITS = Limits(2, ("a", "b"), 100)


class Host:
    """The service as the shadow sees it: one loaded shadow version, a log, counters."""

    def __init__(self, limits: Limits = LIMITS, gate: threading.Event | None = None) -> None:
        self.limits = limits
        self.gate = gate  # predict waits on it: a slow shadow
        self.logged: list[tuple[str, str, Any, Any]] = []
        self.counted: Counter[str] = Counter()
        self.fail_on: str | None = None
        self.calls: list[int] = []  # rows of each model call

    def shadow_predict(self, version: str, x: Any) -> Prediction:
        self.calls.append(len(x))
        if self.gate is not None:
            assert self.gate.wait(10)
        if self.fail_on is not None and any(row[0] == self.fail_on for row in x):
            raise RuntimeError("the shadow's own bug")
        values = np.asarray(x, dtype=np.float64)
        return Prediction(None, values.sum(axis=1, keepdims=True))

    def shadow_limits(self, version: str) -> Limits | None:
        return self.limits

    def shadow_logged(
        self, version: str, request_id: str, x: Any, labels: Any, scores: Any
    ) -> None:
        self.logged.append((version, request_id, x, scores))

    def shadow_counted(self, version: str, outcome: str, rows: int) -> None:
        self.counted[outcome] += rows


def settled(scorer: ShadowScorer, seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while scorer.queued_rows() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert scorer.queued_rows() == 0


def never(limits: Limits) -> Any:
    raise AssertionError("the rows were parsed for the same contract: no second parse")


@pytest.mark.timeout(30)
def test_offered_rows_are_scored_and_logged_under_the_requests_id() -> None:
    host = Host()
    scorer = ShadowScorer(host, Shadow("2"))
    try:
        for i in range(20):
            x = np.array([[i, 1.0], [i, 2.0]])
            chosen = scorer.chosen("1")
            assert chosen is not None
            scorer.offer(chosen, LIMITS, f"r{i}", x, never)
        settled(scorer)
    finally:
        scorer.close()
    assert [r for _, r, _, _ in host.logged] == [f"r{i}" for i in range(20)]
    assert host.counted == {"scored": 40}
    version, _, x, scores = host.logged[3]
    assert version == "2" and scores.tolist() == [[4.0], [5.0]] and x.tolist() == [[3, 1], [3, 2]]


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
    gate = threading.Event()
    host = Host(gate=gate)
    scorer = ShadowScorer(host, Shadow("2"))
    try:
        for i in range(8):  # 3 rows each: the first 3 requests fit (9 rows), the rest drop
            scorer.offer(Shadow("2"), LIMITS, f"r{i}", np.full((3, 2), i), never)
        assert scorer.queued_rows() <= 10
        gate.set()
        settled(scorer)
    finally:
        scorer.close()
    assert host.counted["dropped"] == 15 and host.counted["scored"] == 9
    assert [r for _, r, _, _ in host.logged] == ["r0", "r1", "r2"]


@pytest.mark.timeout(30)
def test_another_contract_is_parsed_again_and_its_refusals_and_failures_are_counted() -> None:
    other = Limits(1, ("a",), 100)
    host = Host(limits=other)
    host.fail_on = "boom"
    scorer = ShadowScorer(host, Shadow("2"))
    parsed_with: list[Limits] = []

    def reparse(limits: Limits) -> Any:
        parsed_with.append(limits)
        return [[7.0]]

    def refuse(limits: Limits) -> Any:
        raise PayloadError(422, "column 'a' is missing")

    try:
        scorer.offer(Shadow("2"), LIMITS, "ok", [[1.0, 2.0]], reparse)
        scorer.offer(Shadow("2"), LIMITS, "refused", [[1.0, 2.0]], refuse)
        scorer.offer(Shadow("2"), LIMITS, "bug", [[1.0, 2.0]], lambda _l: [["boom"]])
        settled(scorer)
    finally:
        scorer.close()
    assert parsed_with == [other]
    assert [(r, s.tolist()) for _, r, _, s in host.logged] == [("ok", [[7.0]])]
    assert host.counted == {"scored": 1, "refused": 1, "failed": 1}


@pytest.mark.timeout(30)
def test_rows_queued_for_a_removed_shadow_are_not_scored() -> None:
    gate = threading.Event()
    host = Host(gate=gate)
    scorer = ShadowScorer(host, Shadow("2"))
    try:
        for i in range(3):
            scorer.offer(Shadow("2"), LIMITS, f"r{i}", [[i, 0.0]], never)
        scorer.set(Shadow("3"))  # the first may be in the model already; the rest are not
        gate.set()
        settled(scorer)
    finally:
        scorer.close()
    assert len(host.logged) <= 1 and host.counted["scored"] <= 1


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


@pytest.mark.timeout(30)
def test_what_queued_is_scored_in_one_call_each_request_logged_with_its_rows(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(shadow_module, "WAKE_S", 60.0)  # woken by the rows alone
    monkeypatch.setattr(shadow_module, "WAKE_ROWS", 20)
    host = Host()
    scorer = ShadowScorer(host, Shadow("2"))
    try:
        for i in range(10):
            scorer.offer(Shadow("2"), LIMITS, f"r{i}", np.array([[i, 0.0], [i, 1.0]]), never)
            if i < 9:
                assert host.calls == [], "not woken per request"
        settled(scorer)
    finally:
        scorer.close()
    assert host.calls == [20] and host.counted == {"scored": 20}
    assert [r for _, r, _, _ in host.logged] == [f"r{i}" for i in range(10)]
    for i, (_, _, x, scores) in enumerate(host.logged):  # each request its own rows, in order
        assert x.tolist() == [[i, 0.0], [i, 1.0]] and scores.tolist() == [[float(i)], [i + 1.0]]


@pytest.mark.timeout(30)
def test_the_byte_bound_drops_but_a_large_request_alone_is_taken(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(shadow_module, "MAX_QUEUED_ROWS", 10)
    monkeypatch.setattr(shadow_module, "MAX_QUEUED_BYTES", 1000)
    gate = threading.Event()
    host = Host(gate=gate)
    scorer = ShadowScorer(host, Shadow("2"))
    try:
        scorer.offer(Shadow("2"), LIMITS, "big", np.zeros((50, 2)), never, size=5000)
        scorer.offer(Shadow("2"), LIMITS, "behind", np.zeros((1, 2)), never, size=10)
        gate.set()
        settled(scorer)
        scorer.offer(Shadow("2"), LIMITS, "a", np.zeros((1, 2)), never, size=600)
        scorer.offer(Shadow("2"), LIMITS, "b", np.zeros((1, 2)), never, size=600)
        settled(scorer)
    finally:
        scorer.close()
    logged = [r for _, r, _, _ in host.logged]
    assert logged[0] == "big" and "behind" not in logged, "nothing queues behind a large one"
    assert "a" in logged and host.counted["dropped"] >= 1


@pytest.mark.timeout(30)
def test_a_batch_the_model_refuses_is_scored_request_by_request(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(shadow_module, "BATCH_ROWS", 4)
    host = Host()
    host.busy = True
    host.fail_on = "boom"
    scorer = ShadowScorer(host, Shadow("2"))
    try:
        for i, first in enumerate(["1", "boom", "3", "4", "5"]):
            scorer.offer(
                Shadow("2"), LIMITS, f"r{i}", np.array([[first, "0"]], dtype=object), never
            )
        host.busy = False
        settled(scorer)
    finally:
        scorer.close()
    assert host.calls[:1] == [4] and sorted(host.calls[1:]) == [1, 1, 1, 1, 1]
    assert [r for _, r, _, _ in host.logged] == ["r0", "r2", "r3", "r4"]
    assert host.counted == {"scored": 4, "failed": 1}
