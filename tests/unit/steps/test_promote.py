"""promote: who, why and the replaced version recorded; unknown aliases and unpassed
versions refused."""

from __future__ import annotations

import contextlib

import pytest

from mlops_ci.config.types import Config
from mlops_ci.errors import GateFailed, InputError, ServiceError
from mlops_ci.steps.compare import compare
from mlops_ci.steps.promote import PromoteResult, promote
from mlops_ci.steps.promotion_records import OVERTAKEN, Stint
from mlops_ci.steps.register import register
from tests.support.fakes import InMemoryRegistry
from tests.support.promotions import (
    Interrupting,
    Killed,
    LosingAlias,
    check_consistent,
    check_history,
    kill,
)
from tests.support.runs import candidate_run, in_production


def test_promote_records_who_why_and_the_replaced_version(
    config: Config, fake_registry: InMemoryRegistry
) -> None:
    old = in_production(fake_registry, config)
    run = candidate_run(fake_registry, config.root, c=10.0)
    compare(config, fake_registry, run.run_id)
    new = register(config, fake_registry).version
    result = promote(config, fake_registry, "@candidate", by="ada", reason="better recall")
    assert (result.previous, result.version) == (old, new)
    tags = fake_registry.get_version(config.model.name, new).tags
    assert tags["mlops.promoted.production.by"] == "ada"
    assert tags["mlops.promoted.production.reason"] == "better recall"
    assert (
        fake_registry.get_version(config.model.name, old).tags[
            "mlops.replaced.production.by_version"
        ]
        == new
    )
    assert fake_registry.aliases[config.model.name]["production"] == new


def test_promote_refuses_unknown_alias_and_unpassed_versions(
    config: Config, fake_registry: InMemoryRegistry
) -> None:
    with pytest.raises(InputError, match="there is no model 'iris-classifier'"):
        promote(config, fake_registry, "@nope", by="a", reason="r")
    run = candidate_run(fake_registry, config.root)
    register(config, fake_registry, run.run_id, force=True)
    with pytest.raises(InputError, match="no alias 'nope'"):
        promote(config, fake_registry, "@nope", by="a", reason="r")
    with pytest.raises(GateFailed, match="verdict 'forced'"):
        promote(config, fake_registry, "1", by="a", reason="r")
    assert promote(config, fake_registry, "1", by="a", reason="r", force=True).version == "1"


# --- records that stay true: kills, lost answers, races (tests/support/promotions.py) ---------

NAME, ALIAS = "iris-classifier", "production"


def passed_versions(reg: InMemoryRegistry, count: int) -> list[str]:
    """``count`` versions that passed compare (no model needed: promote loads none)."""
    return [
        reg.create_version(NAME, reg.add_run(None), {"mlops.compare.verdict": "pass"}, "").version
        for _ in range(count)
    ]


def promote_as(config: Config, reg: object, version: str, reason: str) -> PromoteResult:
    return promote(config, reg, version, by="ci", reason=reason)  # type: ignore[arg-type]


def calls_of_one_promote(config: Config) -> int:
    reg = InMemoryRegistry()
    passed_versions(reg, 2)
    promote_as(config, reg, "1", "first")
    counted = Interrupting(reg)
    promote_as(config, counted, "2", "second")
    return len(counted.calls)


def test_a_promote_killed_at_any_call_leaves_what_the_next_promote_finishes_true(
    config: Config,
) -> None:
    """v1 holds the alias; a promote of v2 dies before each of its registry calls in turn
    (each tag write one call); then v3 is promoted. Whether or not v2's alias write happened,
    every record agrees with where the alias went: v1 -> (v2 ->) v3."""
    total = calls_of_one_promote(config)
    assert total > 10
    moved_at = []
    for point in range(total + 1):
        reg = InMemoryRegistry()
        passed_versions(reg, 3)
        promote_as(config, reg, "1", "first")
        dying = Interrupting(reg, {point: kill})
        with contextlib.suppress(Killed):
            promote_as(config, dying, "2", "killed")
        moved = reg.aliases[NAME][ALIAS] == "2"
        moved_at.append(moved)
        after = promote_as(config, reg, "3", "third")
        history = ["1", "2", "3"] if moved else ["1", "3"]
        check_history(reg, NAME, ALIAS, history, never=set() if moved else {"2"})
        assert after.previous == history[-2]
        if moved:  # its promote stopped after the act: the record is the killed one's own
            assert reg.get_version(NAME, "2").tags[f"mlops.promoted.{ALIAS}.reason"] == "killed"
    assert not moved_at[0] and moved_at[-1] and moved_at.count(False) < len(moved_at) - 1


def test_rerunning_a_killed_promote_finishes_it_without_a_second_record(
    config: Config, fake_registry: InMemoryRegistry
) -> None:
    """Killed right after its alias write: the same promote run again records the first one
    (who, why) and moves nothing."""
    passed_versions(fake_registry, 2)
    promote_as(config, fake_registry, "1", "first")
    counted = Interrupting(fake_registry)
    promote_as(config, counted, "2", "probe")  # where does the alias write fall?
    alias_write = counted.calls.index("set_alias")
    reg = InMemoryRegistry()
    passed_versions(reg, 2)
    promote_as(config, reg, "1", "first")
    with contextlib.suppress(Killed):
        promote_as(config, Interrupting(reg, {alias_write + 1: kill}), "2", "cut off")
    assert f"mlops.promoted.{ALIAS}.at" not in reg.get_version(NAME, "2").tags  # not yet
    again = promote_as(config, reg, "2", "again")
    assert again.unchanged and (again.reason, again.previous) == ("cut off", "1"), again
    assert any("recorded now" in line for line in again.recorded), again.recorded
    check_history(reg, NAME, ALIAS, ["1", "2"], never=set())


@pytest.mark.parametrize("lands", [True, False])
def test_an_alias_write_whose_answer_is_lost_is_judged_by_reading_the_alias_back(
    config: Config, fake_registry: InMemoryRegistry, lands: bool
) -> None:
    passed_versions(fake_registry, 3)
    promote_as(config, fake_registry, "1", "first")
    losing = LosingAlias(fake_registry, lands)
    if lands:
        result = promote_as(config, losing, "2", "answer lost")
        assert result.answer_lost and result.version == "2"
        check_history(fake_registry, NAME, ALIAS, ["1", "2"], never={"3"})
        return
    with pytest.raises(ServiceError, match="names v1, not v2: not promoted, nothing recorded"):
        promote_as(config, losing, "2", "never landed")
    check_history(fake_registry, NAME, ALIAS, ["1"], never={"2", "3"})
    # The write was only late: it lands now, and the next promote records it as it was.
    fake_registry.set_alias(NAME, ALIAS, "2")
    nxt = promote_as(config, fake_registry, "3", "third")
    assert nxt.previous == "2" and nxt.recorded, nxt
    check_history(fake_registry, NAME, ALIAS, ["1", "2", "3"], never=set())
    assert fake_registry.get_version(NAME, "2").tags[f"mlops.promoted.{ALIAS}.reason"] == (
        "never landed"
    )


def test_a_promote_that_read_the_alias_back_failing_reports_unrecorded_not_exit_3(
    config: Config, fake_registry: InMemoryRegistry
) -> None:
    passed_versions(fake_registry, 2)
    promote_as(config, fake_registry, "1", "first")

    class Failing(Interrupting):
        def set_version_tags(self, name: str, version: str, tags: dict[str, str]) -> None:
            if any(".promoted." in k for k in tags):
                raise ServiceError("MLflow at fake failed: 503")
            super().set_version_tags(name, version, tags)

    result = promote_as(config, Failing(fake_registry), "2", "half")
    assert result.unrecorded and "503" in result.unrecorded
    assert fake_registry.aliases[NAME][ALIAS] == "2"
    nxt = promote_as(config, fake_registry, "2", "again")  # the next promote records it
    assert nxt.unchanged and nxt.reason == "half"
    check_history(fake_registry, NAME, ALIAS, ["1", "2"], never=set())


def interleave(config: Config, reg: InMemoryRegistry, point: int) -> None:
    """A promote of v2 and one of v3 from the same holder (v1), v3's run whole before call
    ``point`` of v2's: every order of two processes' alias reads and writes."""
    racing = Interrupting(reg, {point: lambda: promote_as(config, reg, "3", "b")})
    promote_as(config, racing, "2", "a")


def test_two_concurrent_promotes_in_every_interleaving_leave_true_records(
    config: Config,
) -> None:
    total = calls_of_one_promote(config)
    holders = set()
    for point in range(total):
        reg = InMemoryRegistry()
        passed_versions(reg, 3)
        promote_as(config, reg, "1", "first")
        interleave(config, reg, point)
        check_consistent(reg, NAME, ALIAS)
        holder = reg.aliases[NAME][ALIAS]
        holders.add(holder)
        first = reg.get_version(NAME, "1").tags
        assert first[f"mlops.replaced.{ALIAS}.by_version"] in {"2", "3"}
        other = "3" if holder == "2" else "2"
        tags = reg.get_version(NAME, other).tags
        if f"mlops.promoted.{ALIAS}.at" in tags:  # it held the alias, then lost it to the holder
            assert tags[f"mlops.replaced.{ALIAS}.by_version"] == holder, (point, tags)
            mine, won = (Stint.of(reg.get_version(NAME, v), ALIAS) for v in (other, holder))
            assert mine is not None and won is not None
            raced = mine.previous == won.previous  # both read the same holder: they raced
            overtaken = tags[f"mlops.replaced.{ALIAS}.note"] == OVERTAKEN
            assert overtaken == raced, (point, tags)
    assert holders == {"2", "3"}
