"""compare's cost measurement, driven by a scripted clock: two engines whose calls take the
durations a script says, so what the measurement makes of them is exact.

The script replays the way the same model came out 25.7 % apart on p99 on a loaded CI
machine: preemptions hit whichever model happened to be running, more often one in some
rounds and the other in the rest. Both models met the same load overall, so their figures
must agree."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from mlops_ci.config.types import CostConfig
from mlops_ci.packaging import cost
from mlops_ci.packaging.profile import NATIVE, Probe
from mlops_ci.packaging.runtime import Engine

pytestmark = pytest.mark.timeout(60)

FAST_NS, SLOW_NS, BATCH_NS = 10_000, 200_000, 1_000_000
SETTINGS = CostConfig(rounds=7, round_seconds=0.01, batch_rows=100)


class Clock:
    """``time`` as cost.py reads it: advanced only by the engines' calls."""

    def __init__(self) -> None:
        self.ns = 0

    def perf_counter_ns(self) -> int:
        return self.ns

    def perf_counter(self) -> float:
        return self.ns / 1e9


class Script:
    """Both engines' calls: who called when, and how long each single-row call took. In
    rounds 0-3 one call in 33 of ``busy``'s is preempted and one in 200 of the other's; in
    rounds 4-6 the other way round. Pooled, each model meets between 1.5 % and 2 % slow
    calls, above the 1 % a p99 looks past."""

    def __init__(self, clock: Clock, busy: str) -> None:
        self.clock, self.busy = clock, busy
        self.round = -1  # the warm-up: until each engine has scored its batch
        self.warm = 0
        self.calls: list[tuple[int, str]] = []  # (round, engine) of each single-row call
        self.index = {"a": 0, "b": 0}

    def engine(self, name: str) -> Engine:
        def predict(x: Any) -> None:
            if x == "batch":
                self.clock.ns += BATCH_NS
                if self.round < 0:
                    self.warm += 1
                    self.round = 0 if self.warm == 2 else -1
                return
            if self.round < 0:
                self.clock.ns += FAST_NS
                return
            self.calls.append((self.round, name))
            j = self.index[name] = self.index[name] + 1
            often = (name == self.busy) == (self.round < 4)
            self.clock.ns += SLOW_NS if j % (33 if often else 200) == 0 else FAST_NS

        probe = Probe(NATIVE, Path("model"), measured_by=lambda _model, _rows: 42.0)
        return Engine("onnxruntime", predict, lambda n: "batch", lambda i: ("row", i), probe, 512)

    def progress(self, done: int, total: int) -> None:
        self.round = done


def measured(monkeypatch: pytest.MonkeyPatch) -> tuple[dict[str, dict[str, float]], Script]:
    clock = Clock()
    monkeypatch.setattr(cost, "time", clock)
    script = Script(clock, busy="a")
    engines = {"a": script.engine("a"), "b": script.engine("b")}
    return cost.measure(engines, SETTINGS, script.progress), script


def test_the_same_load_met_in_different_rounds_gives_the_same_percentiles(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    found, script = measured(monkeypatch)
    a, b = found["a"], found["b"]
    # a median of the rounds' p99 would read 200 µs for one and 10 µs for the other
    assert a["latency_p99_ms"] == b["latency_p99_ms"] == SLOW_NS / 1e6
    assert a["latency_p50_ms"] == b["latency_p50_ms"] == FAST_NS / 1e6
    assert a["calls"] == b["calls"] == len(script.calls) / 2
    assert a["calls"] >= SETTINGS.rounds * cost.MIN_CALLS
    assert a["rows_per_s"] == pytest.approx(SETTINGS.batch_rows / (BATCH_NS / 1e9))
    assert b["rows_per_s"] == pytest.approx(a["rows_per_s"])
    assert a["peak_rss_mb"] == 42.0 and a["model_size_mb"] == 512 / cost.MIB


def test_each_model_is_called_first_in_every_other_step(monkeypatch: pytest.MonkeyPatch) -> None:
    _, script = measured(monkeypatch)
    for r in range(SETTINGS.rounds):
        names = [name for round_, name in script.calls if round_ == r]
        steps = [tuple(names[i : i + 2]) for i in range(0, len(names), 2)]
        assert set(steps) == {("a", "b"), ("b", "a")}
        leading = [step[0] for step in steps]
        assert abs(leading.count("a") - leading.count("b")) <= 1, r
        assert all(leading[i] != leading[i + 1] for i in range(len(leading) - 1)), r
