"""A gate rule's check: the metric's direction, the gap said once, an absolute tolerance."""

from __future__ import annotations

import pytest

from mlops_ci.config.types import Rule
from mlops_ci.evaluation.comparison import ModelScore
from mlops_ci.evaluation.rules import rule_checks
from mlops_ci.registry import RunRecord


@pytest.mark.parametrize(
    ("rule", "cand", "prod", "status"),
    [
        (Rule("f1_macro", must="better_than_production", tolerance=0.01), 0.905, 0.90, "fail"),
        (Rule("f1_macro", must="better_than_production", tolerance=0.01), 0.92, 0.90, "pass"),
        (Rule("f1_macro", min_relative_change=0.05), 0.94, 0.90, "fail"),
        (Rule("f1_macro", min_relative_change=0.05), 0.95, 0.90, "pass"),
        (Rule("mae", min_absolute_change=-0.1), 1.05, 1.0, "pass"),  # lower is better
        (Rule("mae", min_absolute_change=-0.1), 1.2, 1.0, "fail"),
        (Rule("loss", must="not_worse_than_production", greater_is_better=False), 0.9, 1.0, "pass"),
        (Rule("latency_p99_ms", max_increase=0.25), 1.25, 1.0, "pass"),
        (Rule("latency_p99_ms", max_increase=0.25), 1.26, 1.0, "fail"),
        (Rule("latency_p99_ms", max_increase=0.25), 0.5, 1.0, "pass"),  # faster is fine
        (Rule("rows_per_s", max_decrease=0.2), 800.0, 1000.0, "pass"),
        (Rule("rows_per_s", max_decrease=0.2), 790.0, 1000.0, "fail"),
        (Rule("rows_per_s", min_relative_change=-0.2), 790.0, 1000.0, "fail"),  # more is better
        (Rule("peak_rss_mb", must="not_worse_than_production"), 101.0, 100.0, "fail"),
    ],
)
def test_rules_against_production_follow_the_metric_direction(
    rule: Rule, cand: float, prod: float, status: str
) -> None:
    run = RunRecord("r", "FINISHED")
    checks = rule_checks(
        0,
        rule,
        run,
        ModelScore("candidate", "r", None, {rule.metric: cand}),
        ModelScore("production", "p", "1", {rule.metric: prod}),
        None,
    )
    assert [c.status for c in checks] == [status]


def test_a_rule_check_says_the_gap_once_with_its_direction() -> None:
    """rmse grew: the check shows +gap and 'worse by', never the directional -gap."""
    checks = rule_checks(
        0,
        Rule("rmse", must="not_worse_than_production", tolerance=0.005),
        RunRecord("r", "FINISHED"),
        ModelScore("candidate", "r", None, {"rmse": 121766.1530}),
        ModelScore("production", "p", "1", {"rmse": 118698.0}),
        None,
    )
    assert [c.detail for c in checks] == [
        "121766.1530 vs 118698.0000: Δ +3068.1530, worse by 3068.1530; "
        "allowed: worse by at most 0.005"
    ]
    cost = rule_checks(
        0,
        Rule("latency_p99_ms", max_increase=0.25),
        RunRecord("r", "FINISHED"),
        ModelScore("candidate", "r", None, {}, {"latency_p99_ms": 1.31}),
        ModelScore("production", "p", "1", {}, {"latency_p99_ms": 1.0}),
        None,
    )
    assert cost[0].status == "fail" and cost[0].detail == (
        "1.3100 vs 1.0000: Δ +31.0 %, worse by 31.0 %; allowed: an increase of at most 25.0 %"
    )


@pytest.mark.parametrize(
    ("production", "candidate", "status"),
    [
        (0.95, 0.9451, "pass"),
        (0.95, 0.9449, "fail"),
        (0.10, 0.0951, "pass"),
        (0.10, 0.0949, "fail"),
    ],
)
def test_the_tolerance_is_absolute_whatever_the_scale(
    production: float, candidate: float, status: str
) -> None:
    """tolerance 0.005 means 0.005 of the metric, at any scale: 0.9451 vs 0.95 passes (read as
    relative, 0.5 % of 0.95 = 0.00475, it would fail) and 0.0949 vs 0.10 fails."""
    from mlops_ci.config.types import Rule
    from mlops_ci.evaluation.comparison import ModelScore
    from mlops_ci.evaluation.rules import rule_checks
    from mlops_ci.registry import RunRecord

    rule = Rule(metric="accuracy", must="not_worse_than_production", tolerance=0.005)
    run = RunRecord("r1", "FINISHED")
    (check,) = rule_checks(
        0,
        rule,
        run,
        ModelScore("candidate", "r1", None, {"accuracy": candidate}),
        ModelScore("production", "r0", "1", {"accuracy": production}),
        None,
    )
    assert check.status == status, check
