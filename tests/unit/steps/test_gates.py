"""The deploy gates name what is missing: the comparison, the approval."""

from __future__ import annotations

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
