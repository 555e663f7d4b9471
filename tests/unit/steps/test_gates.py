"""The deploy gates name what is missing: the comparison, the approval."""

from __future__ import annotations

from typing import Any

from mlops_ci.config.types import Config
from mlops_ci.registry import VersionRecord
from mlops_ci.steps.gates import check_gates, comparison_gate


def version(number: str = "2", **tags: str) -> VersionRecord:
    return VersionRecord("iris-classifier", number, "run1", "", dict(tags))


def test_gates_name_what_is_missing(config: Config) -> None:
    assert not comparison_gate(version()).passed
    assert comparison_gate(version(**{"mlops.compare.verdict": "pass"})).passed
    gates, approval = check_gates(version(), config.deploy["production"], {})
    assert [(g.name, g.passed) for g in gates] == [("comparison", False), ("approval", False)]
    assert approval is None and "mlops-ci approve --version 2 --env production" in gates[1].detail
    staging, _ = check_gates(
        version(**{"mlops.compare.verdict": "fail"}), config.deploy["staging"], {}
    )
    assert [g.name for g in staging] == ["comparison"] and not staging[0].passed


def test_the_live_gate_needs_a_passing_fresh_comparison_of_this_version_on_enough_rows() -> None:
    from mlops_ci.steps.gates import live_gate

    def judged(candidate: str, production: str, verdict: str, rows: int) -> dict[str, Any]:
        return {"comparison": {"candidate": candidate, "production": production,
                               "verdict": verdict, "rows": rows}}  # fmt: skip

    ok = live_gate(judged("2", "1", "pass", 800), "2", "1", 500)
    assert ok.passed and ok.detail == "v2 against v1 on 800 labelled rows: pass"
    refusals = {
        "no live comparison": live_gate(None, "2", "1", 500),
        "judged v3, not v2": live_gate(judged("3", "1", "pass", 800), "2", "1", 500),
        "stale: the live comparison was against v1; v4 serves now": live_gate(
            judged("2", "1", "pass", 800), "2", "4", 500
        ),
        "on 800 labelled rows: fail": live_gate(judged("2", "1", "fail", 800), "2", "1", 500),
        "inconclusive": live_gate(judged("2", "1", "inconclusive", 80), "2", "1", 500),
        "but 500 rows are required": live_gate(judged("2", "1", "pass", 499), "2", "1", 500),
        "no live comparison ": live_gate(["not", "a", "record"], "2", "1", 500),
    }
    for said, gate in refusals.items():
        assert not gate.passed and said.strip() in gate.detail, (said, gate.detail)
