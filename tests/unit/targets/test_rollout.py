"""A rollout's health between two scrapes of /metrics: requests, 5xx and p99 per version,
judged against the rules."""

from __future__ import annotations

import pytest

from mlops_ci.config.types import Config
from mlops_ci.targets import rollout

METRICS_BEFORE = """
mlops_requests_total{code="200",endpoint="score",model="m",version="1"} 100.0
mlops_requests_total{code="200",endpoint="score",model="m",version="2"} 5.0
mlops_request_duration_seconds_bucket{endpoint="score",le="0.001",model="m",version="1"} 90.0
mlops_request_duration_seconds_bucket{endpoint="score",le="0.002",model="m",version="1"} 100.0
mlops_request_duration_seconds_bucket{endpoint="score",le="+Inf",model="m",version="1"} 100.0
mlops_request_duration_seconds_bucket{endpoint="score",le="0.001",model="m",version="2"} 5.0
mlops_request_duration_seconds_bucket{endpoint="score",le="0.002",model="m",version="2"} 5.0
mlops_request_duration_seconds_bucket{endpoint="score",le="+Inf",model="m",version="2"} 5.0
"""


METRICS_AFTER = """
mlops_requests_total{code="200",endpoint="score",model="m",version="1"} 200.0
mlops_requests_total{code="200",endpoint="score",model="m",version="2"} 45.0
mlops_requests_total{code="500",endpoint="score",model="m",version="2"} 5.0
mlops_request_duration_seconds_bucket{endpoint="score",le="0.001",model="m",version="1"} 190.0
mlops_request_duration_seconds_bucket{endpoint="score",le="0.002",model="m",version="1"} 200.0
mlops_request_duration_seconds_bucket{endpoint="score",le="+Inf",model="m",version="1"} 200.0
mlops_request_duration_seconds_bucket{endpoint="score",le="0.001",model="m",version="2"} 5.0
mlops_request_duration_seconds_bucket{endpoint="score",le="0.002",model="m",version="2"} 25.0
mlops_request_duration_seconds_bucket{endpoint="score",le="+Inf",model="m",version="2"} 45.0
"""


def test_window_counts_requests_5xx_and_p99_between_scrapes(config: Config) -> None:
    before, after = rollout.parse_metrics(METRICS_BEFORE), rollout.parse_metrics(METRICS_AFTER)
    new = rollout.window("2", before, after)
    current = rollout.window("1", before, after)
    assert (new.requests, new.server_errors) == (45, 5) and new.error_rate == pytest.approx(5 / 45)
    assert new.p99_ms == float("inf")  # 20 of 40 histogram entries slower than 2 ms
    assert (current.requests, current.server_errors, current.p99_ms) == (100, 0, 1.0)
    health = rollout.judge(new, current, config.deploy["production"].rollout)
    assert not health.passed and health.judged
    assert any("5xx rate 11.1% > 1.0%" in r for r in health.reasons)
    assert any("p99 inf ms > 25 ms" in r for r in health.reasons)


def test_judge_needs_enough_requests_and_tolerates_small_latencies(config: Config) -> None:
    rules = config.deploy["production"].rollout
    few = rollout.VersionWindow("2", 3, 0, 1.0)
    assert not rollout.judge(few, None, rules).judged
    fine = rollout.VersionWindow("2", 50, 0, 5.0)
    slow_but_small = rollout.judge(fine, rollout.VersionWindow("1", 50, 0, 0.5), rules)
    assert slow_but_small.passed, "10x of 0.5 ms is still under max_p99_ms"
    slow = rollout.VersionWindow("2", 50, 0, 100.0)
    assert not rollout.judge(slow, rollout.VersionWindow("1", 50, 0, 10.0), rules).passed
    assert rollout.judge(slow, rollout.VersionWindow("1", 50, 0, 50.0), rules).passed
