"""The rollout of deploy, rollback, undeploy and status, driven through an in-memory target;
a deploy killed or signalled on the way and what the next verb makes of it; the registry of
targets against the config's schema."""

from __future__ import annotations

import dataclasses
import json
import signal
from collections.abc import Mapping
from typing import Any

import pytest

from mlops_ci.config.file import schema
from mlops_ci.config.types import Config, DeployEnv
from mlops_ci.errors import InputError
from mlops_ci.records import JobFolder, read_deploy, read_object, write_json_atomic
from mlops_ci.registry import ModelRegistry
from mlops_ci.steps.approve import approve
from mlops_ci.steps.deploy import deploy
from mlops_ci.steps.deploy_journal import Interrupted
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


def packaged(config: Config, serving: str | None = "1", versions: int = 2) -> InMemoryRegistry:
    """Versions 1 and 2, packaged and compared, 2 approved for production; ``serving`` holds
    the production alias."""
    from sklearn.dummy import DummyClassifier

    registry = InMemoryRegistry()
    for _ in range(versions):
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


# --- a deploy killed on the way, settled by the next verb --------------------------------


class Killed(BaseException):
    """The deploy process stopping dead where it stands (as kill -9 leaves it: no handler
    runs, the journal stays 'running', the kernel drops its lock)."""


def killed_at(split: dict[str, float]) -> Any:
    def on_split(weights: dict[str, float]) -> None:
        if weights == split:
            raise Killed

    return on_split


def killed_deploy(
    config: Config, split: dict[str, float]
) -> tuple[Config, InMemoryRegistry, FakeTarget]:
    """v1 serving, then a deploy of v2 that dies once it has set ``split``."""
    config = quick(config)
    registry = packaged(config)
    target = FakeTarget(serving={"1": 100.0}, on_split=killed_at(split))
    with pytest.raises(Killed):
        deploy(config, registry, "2", ENV, "ci", {}, targets=fake_targets(target))
    assert target.weights == split
    target.on_split = None
    return config, registry, target


def journal(config: Config) -> dict[str, Any]:
    found = read_object(JobFolder(config.root).deploy_state(ENV) / "journal.json")
    assert found is not None
    return found


def audit(config: Config) -> list[dict[str, Any]]:
    lines = JobFolder(config.root).deploy_audit.read_text().splitlines()
    return [json.loads(line) for line in lines]


def test_a_deploy_killed_mid_canary_is_reverted_by_status_which_records_it(
    config: Config,
) -> None:
    config, registry, target = killed_deploy(config, {"1": 50.0, "2": 50.0})
    left = journal(config)
    assert (left["state"], left["step"], left["version"], left["back_to"]) == (
        "running",
        50.0,
        "2",
        "1",
    )
    assert not JobFolder(config.root).deploy.exists(), "the dead deploy recorded nothing"

    (row,) = [r for r in status(config, registry, fake_targets(target)) if r.env == ENV]
    assert row.settled is not None and "status reverted the deploy a killed process left" in (
        row.settled
    )
    assert "at step 50 %" in row.settled and "v1 back at 100 %" in row.settled
    assert target.weights == {"1": 100.0} and target.unloaded == ["2"]
    assert (row.version, row.live_split) == ("1", {"1": 100.0})
    record = read_deploy(config.root)
    assert record is not None
    assert (record["version"], record["status"], record["resolved"]) == (
        "2",
        "rolled_back",
        "reverted",
    )
    assert audit(config)[-1]["resolved"] == "reverted"
    assert (
        tag(config, registry, "2", "status") == "rolled_back" and aliased(config, registry) == "1"
    )
    assert (journal(config)["state"], journal(config)["resolved"]) == ("killed", "reverted")
    (again,) = [r for r in status(config, registry, fake_targets(target)) if r.env == ENV]
    assert again.settled is None and len(audit(config)) == 1, "settled once"


def test_a_deploy_killed_in_its_100_percent_window_is_finished_by_the_next_deploy(
    config: Config,
) -> None:
    config, registry, target = killed_deploy(config, {"1": 0.0, "2": 100.0})
    assert aliased(config, registry) == "1"

    lines: list[str] = []
    result = deploy(
        config, registry, "2", ENV, "ci", {}, progress=lines.append, targets=fake_targets(target)
    )
    assert result.status == "serving" and result.resolved == "finished", "not 'unchanged'"
    assert "deploy finished the deploy a killed process left at 100 %" in (result.note or "")
    assert any("finished the deploy a killed process left at 100 %" in line for line in lines)
    assert [(s.percent, s.passed) for s in result.steps] == [(100.0, True)], "judged first"
    assert aliased(config, registry) == "2" and result.previous == "1"
    assert tag(config, registry, "2", "status") == "serving"
    assert tag(config, registry, "1", "status") == "replaced"
    assert read_deploy(config.root)["resolved"] == "finished"  # type: ignore[index]
    assert audit(config)[-1]["resolved"] == "finished" and len(audit(config)) == 1


def test_rollback_reverts_a_deploy_killed_at_100_percent_rather_than_finish_it(
    config: Config,
) -> None:
    config, registry, target = killed_deploy(config, {"1": 0.0, "2": 100.0})
    back = rollback(config, registry, ENV, "bob", "the deploy died", fake_targets(target))
    assert (back.from_version, back.to_version) == ("2", "1")
    assert target.weights == {"1": 100.0} and aliased(config, registry) == "1"
    assert tag(config, registry, "2", "status") == "rolled_back"
    assert tag(config, registry, "2", "rolled_back.by") == "bob"
    assert read_deploy(config.root)["resolved"] == "reverted"  # type: ignore[index]


def rewrite_journal(config: Config, **fields: Any) -> None:
    """The journal as a deploy killed later on its way would have left it."""
    path = JobFolder(config.root).deploy_state(ENV) / "journal.json"
    write_json_atomic(path, {**journal(config), **fields})


FAILED_AT_100 = [[10.0, True], [50.0, True], [100.0, False]]


@pytest.mark.parametrize(
    "left",
    [
        {"phase": "reverting", "judged": FAILED_AT_100},
        {"phase": "judged", "judged": FAILED_AT_100},
        {"phase": "reverting", "interrupted": "SIGTERM"},
        {"phase": "recording", "outcome": "rolled_back"},
    ],
    ids=["reverting", "a failed step", "signalled", "its outcome a rollback"],
)
def test_a_deploy_killed_after_it_turned_against_its_version_is_reverted_not_finished(
    config: Config, left: dict[str, Any]
) -> None:
    """v2 alone at 100 % (and healthy now) is finished only where the dead deploy had not
    decided against it: killed while putting v1 back after a failed step or a SIGTERM, v1
    goes back."""
    config, registry, target = killed_deploy(config, {"1": 0.0, "2": 100.0})
    rewrite_journal(config, **left)
    (row,) = [r for r in status(config, registry, fake_targets(target)) if r.env == ENV]
    assert row.settled is not None and "status reverted the deploy" in row.settled
    assert target.weights == {"1": 100.0} and aliased(config, registry) == "1"
    assert read_deploy(config.root)["resolved"] == "reverted"  # type: ignore[index]
    assert tag(config, registry, "2", "status") == "rolled_back"


def test_a_deploy_killed_after_it_moved_the_alias_goes_back_to_where_it_started(
    config: Config,
) -> None:
    """Killed while recording, the alias already on v2: v2, unhealthy now, is reverted to v1
    (the version the deploy started from, not the alias's) and the alias goes back with it;
    a rollback does the same."""
    for verb in ("status", "rollback"):
        cfg, registry, target = killed_deploy(config, {"1": 0.0, "2": 100.0})
        registry.set_alias(cfg.model.name, cfg.deploy[ENV].alias, "2")  # record() had moved it
        judged = [[10.0, True], [50.0, True], [100.0, True]]
        rewrite_journal(cfg, phase="recording", outcome="serving", judged=judged)
        if verb == "status":
            target.unhealthy_at = 100.0
            (row,) = [r for r in status(cfg, registry, fake_targets(target)) if r.env == ENV]
            assert row.settled is not None and "v1 back at 100 %" in row.settled, row.settled
        else:
            back = rollback(cfg, registry, ENV, "bob", "the deploy died", fake_targets(target))
            assert (back.from_version, back.to_version) == ("2", "1")
        assert target.weights == {"1": 100.0} and "2" in target.unloaded, verb
        assert aliased(cfg, registry) == "1", verb
        assert read_deploy(cfg.root)["resolved"] == "reverted"  # type: ignore[index]
        JobFolder(cfg.root).deploy.unlink()
        (JobFolder(cfg.root).deploy_state(ENV) / "journal.json").unlink()


def test_a_failed_promotes_intent_is_not_taken_for_a_promotion_once_a_deploy_moves_the_alias(
    config: Config,
) -> None:
    """A promote of v2 whose alias write never landed leaves its intent on v2; a deploy then
    moves the production alias to v2. The next promote must not record v2 as promoted by the
    promote that failed: the deploy forgets the intent when it moves the alias."""
    from mlops_ci.steps.promote import promote
    from mlops_ci.steps.promotion_records import Intent, intent_key

    config = quick(config)
    registry = packaged(config)
    alias = config.registry.production_alias
    assert config.deploy[ENV].alias == alias
    failed = Intent.new("ghost", "never landed", False, None, alias, "2026-01-01T00:00:00Z")
    registry.set_version_tags(config.model.name, "2", failed.intent_tags(alias))
    target = FakeTarget(serving={"1": 100.0})
    result = deploy(config, registry, "2", ENV, "ci", {}, targets=fake_targets(target))
    assert result.status == "serving" and aliased(config, registry) == "2"
    assert registry.get_version(config.model.name, "2").tags[intent_key(alias)] == ""
    promote(config, registry, "1", "oncall", "back to v1", force=True)
    tags = registry.get_version(config.model.name, "2").tags
    assert tags.get(f"mlops.promoted.{alias}.by") != "ghost", tags


@pytest.mark.parametrize(("alias", "expected"), [("1", "serving"), ("2", "unchanged")])
def test_unchanged_means_the_alias_and_the_split_both_name_the_version(
    config: Config, alias: str, expected: str
) -> None:
    """v2 at 100 % with the alias on v1 (no journal to say why) is finished, not unchanged."""
    config = quick(config)
    registry = packaged(config, serving=alias)
    target = FakeTarget(serving={"1": 0.0, "2": 100.0})
    result = deploy(config, registry, "2", ENV, "ci", {}, targets=fake_targets(target))
    assert result.status == expected and aliased(config, registry) == "2"
    assert len(result.steps) == (1 if expected == "serving" else 0)


def test_a_deploy_killed_before_it_touched_the_endpoint_leaves_the_split_alone(
    config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = quick(config)
    registry = packaged(config)
    target = FakeTarget(serving={"1": 80.0, "3": 20.0})  # an A/B split someone holds

    def die(version: str) -> tuple[str, ...]:
        raise Killed

    monkeypatch.setattr(target, "columns", die)
    with pytest.raises(Killed):
        deploy(config, registry, "2", ENV, "ci", {}, targets=fake_targets(target))
    monkeypatch.undo()
    (row,) = [r for r in status(config, registry, fake_targets(target)) if r.env == ENV]
    assert target.weights == {"1": 80.0, "3": 20.0} and target.splits == []
    assert (journal(config)["state"], journal(config)["resolved"]) == ("killed", "abandoned")
    assert audit(config)[-1]["resolved"] == "abandoned" and row.settled is None


def test_a_second_deploy_rollback_or_undeploy_is_refused_while_one_runs(config: Config) -> None:
    config = quick(config)
    registry = packaged(config)
    target = FakeTarget(serving={"1": 100.0})
    seen: list[Any] = []

    def meanwhile(weights: dict[str, float]) -> None:
        if seen:
            return
        for verb in (
            lambda: deploy(config, registry, "2", ENV, "ci", {}, targets=fake_targets(target)),
            lambda: rollback(config, registry, ENV, "bob", "why", fake_targets(target)),
            lambda: undeploy(config, registry, ENV, "bob", "why", {}, fake_targets(target)),
        ):
            with pytest.raises(InputError) as refused:
                verb()
            seen.append(str(refused.value))
        seen.extend(r for r in status(config, registry, fake_targets(target)) if r.env == ENV)

    target.on_split = meanwhile
    assert deploy(config, registry, "2", ENV, "ci", {}, targets=fake_targets(target)).status == (
        "serving"
    )
    import os

    for message in seen[:3]:
        assert f"a deploy of v2 to {ENV} is running (pid {os.getpid()}" in message
    assert seen[3].deploying == str(os.getpid()) and seen[3].settled is None
    assert target.running() and aliased(config, registry) == "2"


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_sigterm_or_sigint_mid_canary_puts_the_split_back_and_records_it(
    config: Config, signum: signal.Signals, code: int
) -> None:
    config = quick(config)
    registry = packaged(config)
    kept = signal.getsignal(signum)

    def signalled(weights: dict[str, float]) -> None:
        if weights == {"1": 50.0, "2": 50.0}:
            signal.raise_signal(signum)

    target = FakeTarget(serving={"1": 100.0}, on_split=signalled)
    with pytest.raises(Interrupted) as stopped:
        deploy(config, registry, "2", ENV, "ci", {}, targets=fake_targets(target))
    assert stopped.value.exit_code == code and stopped.value.signal == signum.name
    assert f"stopped by {signum.name}" in str(stopped.value) and "v1 back at 100 %" in str(
        stopped.value
    )
    assert target.weights == {"1": 100.0} and target.unloaded == ["2"]
    record = read_deploy(config.root)
    assert record is not None
    assert (record["status"], record["interrupted"]) == ("rolled_back", signum.name)
    assert [s["percent"] for s in record["steps"]] == [10.0], "the step it stopped in: unjudged"
    assert audit(config)[-1]["interrupted"] == signum.name
    assert (
        tag(config, registry, "2", "status") == "rolled_back" and aliased(config, registry) == "1"
    )
    assert journal(config)["state"] == "rolled_back"
    assert signal.getsignal(signum) is kept, "the handler is put back"


def test_a_signal_while_the_outcome_is_recorded_waits_for_the_records(
    config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = quick(config)
    registry = packaged(config)
    set_alias = registry.set_alias

    def signalled(name: str, alias: str, version: str) -> None:
        signal.raise_signal(signal.SIGTERM)
        set_alias(name, alias, version)

    monkeypatch.setattr(registry, "set_alias", signalled)
    target = FakeTarget(serving={"1": 100.0})
    with pytest.raises(Interrupted, match="recorded in full") as stopped:
        deploy(config, registry, "2", ENV, "ci", {}, targets=fake_targets(target))
    assert stopped.value.exit_code == 143
    assert aliased(config, registry) == "2" and target.weights == {"1": 0.0, "2": 100.0}
    assert read_deploy(config.root)["status"] == "serving"  # type: ignore[index]
    assert journal(config)["state"] == "serving"


class NeverReady(FakeTarget):
    """Version ``bad`` never becomes ready: loading it fails, as a tampered image does."""

    def __init__(self, bad: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.bad = bad

    def load(self, version: str) -> None:
        super().load(version)
        if version == self.bad:
            from mlops_ci.errors import ServiceError

            raise ServiceError(f"v{version} did not become ready")


def test_a_deploy_that_fails_puts_back_what_it_touched_and_a_rollback_is_still_a_rollback(
    config: Config,
) -> None:
    """The failing deploy is alive: it puts the split back and closes its journal itself, so
    the next rollback rolls back the deployment before it, not the deploy that failed."""
    from mlops_ci.errors import ServiceError

    config = quick(config)
    registry = packaged(config)
    target = NeverReady("1", serving={"1": 100.0})
    targets = fake_targets(target)
    assert deploy(config, registry, "2", ENV, "ci", {}, targets=targets).status == "serving"
    target.unload("1")  # v1 to be loaded again, and never ready
    approve(config, registry, "1", ENV, "alice", "back to v1")
    with pytest.raises(ServiceError, match="did not become ready"):
        deploy(config, registry, "1", ENV, "ci", {}, targets=targets)
    assert target.weights == {"2": 100.0}, "the version that failed is unloaded"
    left = journal(config)
    assert (left["state"], left["resolved"], left["failed_in"]) == ("failed", "reverted", "loading")
    assert "did not become ready" in left["error"]
    assert aliased(config, registry) == "2"

    target.bad = ""
    back = rollback(config, registry, ENV, "bob", "p99 up", targets)
    assert (back.from_version, back.to_version) == ("2", "1")
    assert target.weights == {"1": 100.0, "2": 0.0} and aliased(config, registry) == "1"
