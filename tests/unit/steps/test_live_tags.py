"""quality's live figures on the versions, and lineage showing them beside the offline ones."""

from __future__ import annotations

from typing import Any

from mlops_ci.config.types import Config
from mlops_ci.steps.lineage import lineage, markdown
from mlops_ci.steps.live_tags import live_tags, record_live
from tests.support.fakes import InMemoryRegistry

RECORD: dict[str, Any] = {
    "created_at": 1796601600.0,  # 2026-12-07T00:00:00Z
    "versions": {
        "1": {"rows": 474, "metrics": {"f1_macro": 0.974512, "accuracy": 0.97468}},
        "2": {"rows": 474, "metrics": {"f1_macro": 0.548912, "accuracy": 0.654}},
        "9": {"rows": 3, "metrics": {"f1_macro": 1.0}},
    },
    "comparison": {
        "production": "1",
        "candidate": "2",
        "verdict": "fail",
        "rows": 474,
        "significance": {
            "metric": "f1_macro",
            "difference": -0.4257,
            "ci_low": -0.4473,
            "ci_high": -0.4063,
            "confidence": 0.95,
        },
    },  # fmt: skip
    "production_health": {"version": "1", "verdict": "healthy"},
}


def test_each_version_gets_its_figures_and_its_role_in_the_comparison() -> None:
    tags = live_tags(RECORD)
    assert tags["1"] == {
        "mlops.live.f1_macro": "0.974512",
        "mlops.live.accuracy": "0.97468",
        "mlops.live.rows": "474",
        "mlops.live.at": "2026-12-07T00:00:00Z",
        "mlops.live.health": "healthy",
    }
    assert tags["2"]["mlops.live.verdict"] == "fail" and tags["2"]["mlops.live.against"] == "1"
    assert tags["2"]["mlops.live.interval"] == "f1_macro -0.4257 [-0.4473, -0.4063] at 95%"
    assert "mlops.live.verdict" not in tags["9"] and "mlops.live.health" not in tags["9"]


def test_lineage_shows_live_figures_beside_the_offline_ones(config: Config) -> None:
    from sklearn.dummy import DummyClassifier

    registry = InMemoryRegistry()
    name = config.model.name
    for _ in range(2):
        registry.create_version(
            name, registry.add_run(DummyClassifier()), {"mlops.metric.f1_macro": "0.96"}, ""
        )
    assert record_live(registry, name, RECORD) == ["9"]  # not in this registry: not tagged
    trail = lineage(config, registry, "2")
    assert trail.live["f1_macro"] == "0.548912" and trail.live["verdict"] == "fail"
    page = markdown(trail)
    assert "| f1_macro | 0.96 | 0.548912 |" in page
    assert "| accuracy | – | 0.654 |" in page  # no offline figure recorded for it
    assert "- live comparison: fail" in page and "- against version: 1" in page


def test_a_later_run_empties_what_it_no_longer_says(config: Config) -> None:
    from sklearn.dummy import DummyClassifier

    registry = InMemoryRegistry()
    name = config.model.name
    for _ in range(2):
        registry.create_version(name, registry.add_run(DummyClassifier()), {}, "")
    record_live(registry, name, RECORD)
    later = {**RECORD, "comparison": None, "production_health": {"version": "2", "verdict": "ok"}}
    later["versions"] = {"2": {"rows": 10, "metrics": {"accuracy": 0.5}}}
    record_live(registry, name, later)
    trail = lineage(config, registry, "2")
    assert trail.live["health"] == "ok" and trail.live["accuracy"] == "0.5"
    for gone in ("verdict", "against", "interval", "f1_macro"):
        assert gone not in trail.live, gone
