"""The rollout of deploy, rollback, undeploy and status, driven through an in-memory target;
the registry of targets against the config's schema."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import pytest

from mlops_ci.config.file import schema
from mlops_ci.config.types import Config, DeployEnv
from mlops_ci.errors import InputError
from mlops_ci.records import read_deploy
from mlops_ci.registry import ModelRegistry
from mlops_ci.steps.approve import approve
from mlops_ci.steps.deploy import deploy
from mlops_ci.steps.rollback import rollback
from mlops_ci.steps.status import status
from mlops_ci.steps.undeploy import undeploy
from mlops_ci.targets import TARGETS, TargetKind, Targets, target_for
from mlops_ci.targets.base import Target, TargetUnavailable
from tests.support.fake_target import FakeTarget, fake_targets
from tests.support.fakes import InMemoryRegistry

ENV = "production"


def quick(config: Config, steps: tuple[float, ...] = (10.0, 50.0, 100.0)) -> Config:
    """``config`` whose production rollout goes through ``steps`` without waiting or probing."""
    env = config.deploy[ENV]
    rollout = dataclasses.replace(env.rollout, steps=steps, window_seconds=0.0, probe_requests=0)
    deploy_envs = {**config.deploy, ENV: dataclasses.replace(env, rollout=rollout)}
    return dataclasses.replace(config, deploy=deploy_envs)


def packaged(config: Config, serving: str | None = "1") -> InMemoryRegistry:
    """Versions 1 and 2, packaged and compared, 2 approved for production; ``serving`` holds
    the production alias."""
    from sklearn.dummy import DummyClassifier

    registry = InMemoryRegistry()
    for _ in range(2):
        registry.create_version(
            config.model.name,
            registry.add_run(DummyClassifier()),
            {"mlops.compare.verdict": "pass", "mlops.package.complete": "true"},
            "",
        )
    if serving is not None:
        registry.set_alias(config.model.name, config.deploy[ENV].alias, serving)
    approve(config, registry, "2", ENV, "alice", "change 42")
    return registry


def aliased(config: Config, registry: InMemoryRegistry) -> str | None:
    found = registry.get_version_by_alias(config.model.name, config.deploy[ENV].alias)
    return found.version if found else None


def tag(config: Config, registry: InMemoryRegistry, version: str, key: str) -> str | None:
    return registry.get_version(config.model.name, version).tags.get(f"mlops.deploy.{ENV}.{key}")


def test_a_canary_sets_10_50_100_in_order_and_moves_the_alias_only_at_100(
    config: Config,
) -> None:
    config = quick(config)
    registry = packaged(config)
    alias_at_each_step: list[str | None] = []
    target = FakeTarget(
        serving={"1": 100.0},
        on_split=lambda _: alias_at_each_step.append(aliased(config, registry)),
    )
    result = deploy(config, registry, "2", ENV, "ci", {}, targets=fake_targets(target))

    assert target.loaded == ["2"] and target.started == []
    assert target.splits == [{"1": 90.0, "2": 10.0}, {"1": 50.0, "2": 50.0}, {"1": 0.0, "2": 100.0}]
    assert alias_at_each_step == ["1", "1", "1"], "the alias moves once 100 % was judged healthy"
    assert [(s.percent, s.passed, s.judged) for s in result.steps] == [
        (10.0, True, True),
        (50.0, True, True),
        (100.0, True, True),
    ]
    assert (result.status, result.alias, result.previous) == (
        "serving",
        config.deploy[ENV].alias,
        "1",
    )
    assert aliased(config, registry) == "2"
    assert target.weights == {"1": 0.0, "2": 100.0}, "v1 stays loaded at 0 % for a quick rollback"
    assert target.unloaded == [] and target.stops == 0
    assert tag(config, registry, "2", "status") == "serving"
    assert tag(config, registry, "1", "status") == "replaced"


def test_an_unhealthy_step_rolls_back_to_the_previous_version_and_says_why(
    config: Config,
) -> None:
    config = quick(config)
    registry = packaged(config)
    target = FakeTarget(serving={"1": 100.0}, unhealthy_at=50.0)
    result = deploy(config, registry, "2", ENV, "ci", {}, targets=fake_targets(target))

    assert target.splits == [{"1": 90.0, "2": 10.0}, {"1": 50.0, "2": 50.0}, {"1": 100.0}]
    assert target.unloaded == ["2"] and target.weights == {"1": 100.0}
    assert (result.status, result.alias, result.split) == ("rolled_back", None, {"1": 100.0})
    assert aliased(config, registry) == "1"
    assert tag(config, registry, "2", "status") == "rolled_back"
    assert tag(config, registry, "1", "status") is None, "the version serving is left as it was"
    record = read_deploy(config.root)
    assert record is not None and record["status"] == "rolled_back"
    assert [(s["percent"], s["passed"]) for s in record["steps"]] == [(10.0, True), (50.0, False)]
    assert record["steps"][-1]["reasons"] == ["v2 5xx rate 100.0% > 1.0%"]


@pytest.mark.parametrize("unhealthy_at", [None, 100.0])
def test_a_first_deployment_starts_the_version_alone_and_stops_it_if_unhealthy(
    config: Config, unhealthy_at: float | None
) -> None:
    config = quick(config)
    registry = packaged(config, serving=None)
    target = FakeTarget(serving=None, unhealthy_at=unhealthy_at)
    result = deploy(config, registry, "2", ENV, "ci", {}, targets=fake_targets(target))

    assert target.started == ["2"] and target.loaded == []
    assert target.splits == [{"2": 100.0}]
    if unhealthy_at is None:
        assert (result.status, target.stops, aliased(config, registry)) == ("serving", 0, "2")
    else:
        assert (result.status, target.stops, aliased(config, registry)) == ("rolled_back", 1, None)
        assert result.note == "the first version was unhealthy; stopped"


def test_a_target_whose_engine_does_not_answer_skips_the_deploy_and_records_it(
    config: Config,
) -> None:
    def unavailable(
        config: Config, env: DeployEnv, registry: ModelRegistry, environ: Mapping[str, str] | None
    ) -> Target:
        raise TargetUnavailable("Docker engine", "connection refused")

    registry = packaged(config)
    result = deploy(
        config,
        registry,
        "2",
        ENV,
        "ci",
        {},
        targets={"local": TargetKind(unavailable, routed=True)},
    )
    assert (result.status, result.note) == ("skipped", "no Docker engine: connection refused")
    assert tag(config, registry, "2", "status") == "skipped" and aliased(config, registry) == "1"


def test_rollback_status_and_undeploy_drive_the_same_target(config: Config) -> None:
    config = quick(config)
    registry = packaged(config)
    target = FakeTarget(serving={"1": 100.0})
    targets = fake_targets(target)
    deploy(config, registry, "2", ENV, "ci", {}, targets=targets)

    live = {s.env: (s.live_split, s.running) for s in status(config, registry, targets)}
    assert live[ENV] == ({"1": 0.0, "2": 100.0}, True)

    back = rollback(config, registry, ENV, "bob", "p99 up", targets)
    assert (back.from_version, back.to_version) == ("2", "1")
    assert target.splits[-1] == {"1": 100.0} and target.loaded == ["2"], "v1 was still loaded"
    assert aliased(config, registry) == "1"

    done = undeploy(config, registry, ENV, "bob", "decommissioned", {}, targets)
    assert (done.status, done.versions, target.stops) == ("undeployed", ["1", "2"], 1)
    assert not target.running()


def test_a_registry_without_the_environments_target_names_it(config: Config) -> None:
    registry = packaged(config)
    only_docker = fake_targets(FakeTarget(name="docker"), name="docker")
    with pytest.raises(InputError, match=r"deploy\.production\.target: no deploy target 'local'"):
        target_for(config, config.deploy[ENV], registry, targets=only_docker)
    with pytest.raises(InputError, match=r"no deploy target 'local' \(known: docker\)"):
        deploy(config, registry, "2", ENV, "ci", {}, targets=only_docker)
    empty: Targets = {}
    with pytest.raises(InputError, match=r"\(known: none\)"):
        target_for(config, config.deploy[ENV], registry, targets=empty)


def test_the_registry_has_a_target_for_every_value_the_schema_allows() -> None:
    environment: dict[str, Any] = schema()["properties"]["deploy"]["additionalProperties"]
    assert sorted(TARGETS) == sorted(environment["properties"]["target"]["enum"])
