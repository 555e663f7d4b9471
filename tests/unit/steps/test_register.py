"""register against the in-memory registry: a comparison first unless forced, its tags,
the run a forced register takes."""

from __future__ import annotations

import contextlib

import pytest

from mlops_ci.config.types import Config
from mlops_ci.errors import InputError
from mlops_ci.records import read_registration
from mlops_ci.registry import TAG_COMPLETE, TAG_MODEL_SHA256
from mlops_ci.steps.compare import compare
from mlops_ci.steps.register import register
from tests.support.fakes import InMemoryRegistry
from tests.support.promotions import Interrupting, Killed, kill
from tests.support.runs import candidate_run, fit, in_production, record_train


def test_register_needs_a_comparison_unless_forced(
    config: Config, fake_registry: InMemoryRegistry
) -> None:
    run = candidate_run(fake_registry, config.root)
    with pytest.raises(InputError, match="no comparison for run"):
        register(config, fake_registry, run.run_id)
    forced = register(config, fake_registry, run.run_id, force=True)
    tags = fake_registry.get_version(config.model.name, forced.version).tags
    assert tags["mlops.forced"] == "true" and tags["mlops.compare.verdict"] == "forced"


def test_register_tags_lineage_and_is_idempotent(
    config: Config, fake_registry: InMemoryRegistry
) -> None:
    run = candidate_run(fake_registry, config.root)
    compare(config, fake_registry, run.run_id)
    first = register(config, fake_registry)
    again = register(config, fake_registry)
    assert (first.version, first.existing, again.version, again.existing) == ("1", False, "1", True)
    tags = fake_registry.get_version(config.model.name, "1").tags
    assert tags["mlops.git.commit"] == "abc"
    assert tags["mlops.compare.verdict"] == "no-baseline"
    assert float(tags["mlops.metric.accuracy"]) == pytest.approx(0.95)
    assert fake_registry.aliases[config.model.name]["candidate"] == "1"


def test_forced_register_takes_the_run_just_trained_not_the_stale_comparison(
    config: Config, fake_registry: InMemoryRegistry
) -> None:
    in_production(fake_registry, config)
    worse = candidate_run(fake_registry, config.root, c=0.01)
    record_train(config, worse.run_id)
    assert compare(config, fake_registry).verdict == "fail"
    latest = candidate_run(fake_registry, config.root, c=2.0)
    record_train(config, latest.run_id)
    with pytest.raises(InputError, match=f"comparison.json is of run {worse.run_id}, not of run "):
        register(config, fake_registry)
    forced = register(config, fake_registry, force=True)
    assert forced.run_id == latest.run_id and forced.forced and forced.verdict == "forced"
    tags = fake_registry.get_version(config.model.name, forced.version).tags
    assert tags["mlops.run_id"] == latest.run_id and tags["mlops.forced"] == "true"
    assert "mlops.metric.f1_macro" not in tags  # the stale comparison's metrics are not its own


def test_forced_register_after_a_failed_comparison_of_the_same_run_says_fail(
    config: Config, fake_registry: InMemoryRegistry
) -> None:
    in_production(fake_registry, config)
    worse = candidate_run(fake_registry, config.root, c=0.01)
    record_train(config, worse.run_id)
    compare(config, fake_registry)
    forced = register(config, fake_registry, force=True)
    assert (forced.run_id, forced.verdict, forced.forced) == (worse.run_id, "fail", True)


def test_a_register_killed_at_any_call_is_finished_by_the_next_one(config: Config) -> None:
    """Killed before each of its registry calls in turn (each tag write one call), then run
    again: one version for the run, complete with its digest, the alias on it, register.json
    naming it."""
    model = fit(config.root, 1.0)
    probe = InMemoryRegistry()
    counted = Interrupting(probe)
    register(config, counted, probe.add_run(model).run_id, force=True)
    assert "create_version" in counted.calls and counted.calls[-1] == "set_alias"
    for point in range(len(counted.calls)):
        reg = InMemoryRegistry()
        run = reg.add_run(model)
        with contextlib.suppress(Killed):
            register(config, Interrupting(reg, {point: kill}), run.run_id, force=True)
            raise AssertionError(f"not killed at call {point}")
        again = register(config, reg, run.run_id, force=True)
        (version,) = reg.find_versions_by_run(config.model.name, run.run_id)
        assert again.version == version.version, point
        assert version.tags[TAG_COMPLETE] == "true" and len(version.tags[TAG_MODEL_SHA256]) == 64
        assert reg.aliases[config.model.name]["candidate"] == version.version
        assert read_registration(config.root) == again


def test_a_version_made_without_mlops_tags_is_completed_with_its_digest(
    config: Config, fake_registry: InMemoryRegistry
) -> None:
    run = candidate_run(fake_registry, config.root)
    bare = fake_registry.create_version(config.model.name, run, {}, "")  # by hand, say
    done = register(config, fake_registry, run.run_id, force=True)
    tags = fake_registry.get_version(config.model.name, bare.version).tags
    assert done.existing and done.version == bare.version
    assert tags[TAG_COMPLETE] == "true" and len(tags[TAG_MODEL_SHA256]) == 64


@pytest.mark.parametrize("state", ["KILLED", "FAILED", "RUNNING"])
def test_a_run_that_did_not_finish_is_never_registered_even_forced(
    config: Config, fake_registry: InMemoryRegistry, state: str
) -> None:
    """A train killed after it logged its model and before it ended its run (the next verb
    marks the run KILLED): its model may be partial, so not even --force registers it."""
    import dataclasses

    run = candidate_run(fake_registry, config.root)
    fake_registry.runs[run.run_id] = dataclasses.replace(run, status=state)
    with pytest.raises(InputError, match=f"is {state}, not FINISHED"):
        register(config, fake_registry, run.run_id, force=True)
    assert fake_registry.find_versions_by_run(config.model.name, run.run_id) == []
