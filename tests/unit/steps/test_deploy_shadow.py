"""deploy.ENV.shadow: each deploy leaves the version the config names scoring unseen beside the
served one, or none (with why) when it names the served version or nothing; a rollback of the
version that was the shadow takes it out of shadowing first."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from mlops_ci.config.deployenv import ShadowConfig
from mlops_ci.config.types import Config
from mlops_ci.records import JobFolder, read_object
from mlops_ci.steps.deploy import deploy
from tests.support.fake_target import FakeTarget, fake_targets
from tests.support.fakes import InMemoryRegistry
from tests.unit.steps.test_deploy import ENV, packaged, quick


def shadowed(config: Config, version: str = "@candidate", percent: float = 25.0) -> Config:
    env = dataclasses.replace(config.deploy[ENV], shadow=ShadowConfig(version, percent))
    return dataclasses.replace(config, deploy={**config.deploy, ENV: env})


def three_versions(config: Config, candidate: str | None) -> InMemoryRegistry:
    """v1 in production, v2 approved for it, v3 packaged; ``candidate`` holds that alias."""
    registry = packaged(config, versions=3)
    if candidate is not None:
        registry.set_alias(config.model.name, "candidate", candidate)
    return registry


@pytest.mark.timeout(60)
def test_the_candidate_shadows_what_the_deploy_left_serving(config: Config) -> None:
    config = shadowed(quick(config))
    registry = three_versions(config, candidate="3")
    target = FakeTarget(serving={"1": 100.0})
    result = deploy(config, registry, "2", ENV, "ci", {}, targets=fake_targets(target))
    assert result.status == "serving" and result.shadow == {"version": "3", "percent": 25.0}
    assert target.shadow == ("3", 25.0) and target.loaded == ["2", "3"]
    assert target.weights == {"1": 0.0, "2": 100.0, "3": 0.0}, "the shadow takes no traffic"
    recorded = read_object(JobFolder(config.root).deploy)
    assert recorded is not None and recorded["shadow"] == {"version": "3", "percent": 25.0}


@pytest.mark.timeout(60)
def test_no_shadow_where_it_would_be_the_served_version_or_names_nothing(config: Config) -> None:
    config = shadowed(quick(config))
    registry = three_versions(config, candidate="2")
    target = FakeTarget(serving={"1": 100.0})
    target.load("3")
    target.set_shadow("3", 10.0)  # an earlier deploy's shadow
    result = deploy(config, registry, "2", ENV, "ci", {}, targets=fake_targets(target))
    assert result.status == "serving" and result.shadow is None and target.shadow is None
    assert result.note and "@candidate is v2, served" in result.note

    nothing = shadowed(quick(config), "@challenger")
    again = deploy(nothing, registry, "2", ENV, "ci", {}, targets=fake_targets(target))
    assert again.status == "unchanged" and again.shadow is None
    assert again.note and "no shadow: @challenger" in again.note and "no alias" in again.note


@pytest.mark.timeout(60)
def test_a_rolled_back_deploy_sets_no_shadow_and_unloading_the_shadow_ends_it(
    config: Config,
) -> None:
    config = shadowed(quick(config), "@candidate")
    registry = three_versions(config, candidate="3")
    target = FakeTarget(serving={"1": 100.0, "2": 0.0}, unhealthy_at=10.0)
    target.set_shadow("2", 100.0)
    result = deploy(config, registry, "2", ENV, "ci", {}, targets=fake_targets(target))
    assert result.status == "rolled_back" and result.shadow is None
    assert target.unloaded == ["2"] and target.shadow is None


@pytest.mark.timeout(60)
def test_require_live_refuses_until_quality_passed_the_version_against_what_serves(
    config: Config,
) -> None:
    from mlops_ci.errors import GateFailed
    from mlops_ci.records import write_json_atomic

    env = dataclasses.replace(quick(config).deploy[ENV], require_live_rows=200)
    config = dataclasses.replace(config, deploy={**config.deploy, ENV: env})
    registry = packaged(quick(config))
    target = FakeTarget(serving={"1": 100.0})
    with pytest.raises(GateFailed, match="gate live: no live comparison"):
        deploy(config, registry, "2", ENV, "ci", {}, targets=fake_targets(target))
    assert target.splits == []
    comparison = {"production": "1", "candidate": "2", "verdict": "pass", "rows": 150}
    write_json_atomic(JobFolder(config.root).quality, {"comparison": comparison})
    with pytest.raises(GateFailed, match="150 labelled rows: pass, but 200 rows are required"):
        deploy(config, registry, "2", ENV, "ci", {}, targets=fake_targets(target))
    write_json_atomic(JobFolder(config.root).quality, {"comparison": {**comparison, "rows": 900}})
    result = deploy(config, registry, "2", ENV, "ci", {}, targets=fake_targets(target))
    assert result.status == "serving"
    assert [g.name for g in result.gates if g.passed][-1] == "live"


@pytest.mark.timeout(60)
def test_a_registry_that_does_not_answer_for_the_shadow_leaves_the_deploy_as_it_is(
    config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlops_ci.errors import ServiceError

    config = shadowed(quick(config))
    registry = three_versions(config, candidate="3")
    asked = registry.get_version_by_alias

    def flaky(name: str, alias: str) -> Any:
        if alias == "candidate":
            raise ServiceError("MLflow at http://mlflow.invalid answered HTTP 503 to every try")
        return asked(name, alias)

    monkeypatch.setattr(registry, "get_version_by_alias", flaky)
    target = FakeTarget(serving={"1": 100.0})
    result = deploy(config, registry, "2", ENV, "ci", {}, targets=fake_targets(target))
    assert result.status == "serving" and target.weights == {"1": 0.0, "2": 100.0}
    assert result.shadow is None and result.note and "answered HTTP 503" in result.note
