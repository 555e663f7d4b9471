"""The promotion journal: intents, promotions and the replaced records derived from them."""

from __future__ import annotations

from mlops_ci.registry import VersionRecord
from mlops_ci.steps.promotion_records import (
    OVERTAKEN,
    Intent,
    Stint,
    closures,
    reconcile,
    unfinished_intent,
    unpromoted_predecessors,
)
from tests.support.fakes import InMemoryRegistry
from tests.support.promotions import check_consistent

NAME, ALIAS = "m", "production"


def version(number: str, **tags: str) -> VersionRecord:
    return VersionRecord(NAME, number, None, "", {k.replace("__", "."): v for k, v in tags.items()})


def intent(id: str, previous: str = "", previous_id: str = "") -> Intent:
    return Intent(id, "ada", "why", "false", previous, previous_id, "2030-01-01T00:00:00Z")


def stint(number: str, id: str, seen: float, previous: str = "", previous_id: str = "") -> Stint:
    at = f"2030-01-01T00:00:{int(seen):02d}Z"
    return Stint(number, id, at, seen, previous, previous_id, closed=False)


def test_an_intent_counts_until_it_is_recorded_and_only_if_whole() -> None:
    tags = intent("a1", "1").intent_tags(ALIAS)
    assert list(tags) == [f"mlops.promoting.{ALIAS}"]  # one tag: written whole or not at all
    whole = VersionRecord(NAME, "2", None, "", dict(tags))
    assert unfinished_intent(whole, ALIAS) == intent("a1", "1")
    recorded = {**tags, **intent("a1", "1").promoted_tags(ALIAS, 5.0)}
    assert list(recorded)[-1] == f"mlops.promoted.{ALIAS}.journal"  # written last
    assert unfinished_intent(VersionRecord(NAME, "2", None, "", recorded), ALIAS) is None
    of_itself = VersionRecord(NAME, "1", None, "", dict(tags))  # it read itself holding
    assert unfinished_intent(of_itself, ALIAS) is None
    for odd in ("", "not json", '{"id": "x"}', "[1]"):
        strange = VersionRecord(NAME, "2", None, "", {f"mlops.promoting.{ALIAS}": odd})
        assert unfinished_intent(strange, ALIAS) is None, odd


def test_a_stint_is_closed_only_by_a_replaced_record_of_its_own_promotion() -> None:
    promoted = intent("b2", "1", "a1").promoted_tags(ALIAS, 7.5)
    old = {f"mlops.replaced.{ALIAS}.of": "zz", f"mlops.replaced.{ALIAS}.at": "2031-01-01T00:00:00Z"}
    open_one = Stint.of(VersionRecord(NAME, "2", None, "", {**old, **promoted}), ALIAS)
    assert open_one is not None and not open_one.closed and open_one.seen == 7.5
    assert (open_one.previous, open_one.previous_id) == ("1", "a1")
    mine = {**promoted, f"mlops.replaced.{ALIAS}.of": "b2"}
    closed = Stint.of(VersionRecord(NAME, "2", None, "", mine), ALIAS)
    assert closed is not None and closed.closed
    # records from before ids: the promotion's at is its id; replaced since means closed
    legacy = version("3", mlops__promoted__production__at="2024-05-01T10:00:00Z")
    before = Stint.of(legacy, ALIAS)
    assert before is not None and before.id == "at:2024-05-01T10:00:00Z" and not before.closed
    assert before.seen > 0
    legacy.tags[f"mlops.replaced.{ALIAS}.at"] = "2024-05-02T10:00:00Z"
    after = Stint.of(legacy, ALIAS)
    assert after is not None and after.closed
    assert Stint.of(version("4"), ALIAS) is None


def test_one_promotion_after_another_replaces_each_by_the_next() -> None:
    chain = [stint("1", "a", 1), stint("2", "b", 2, "1", "a"), stint("3", "c", 3, "2", "b")]
    done = closures(chain, "3", "2030-02-01T00:00:00Z")
    assert [(c.version, c.of, c.by_version, c.note) for c in done] == [
        ("1", "a", "2", ""),
        ("2", "b", "3", ""),
    ]
    assert done[0].at == chain[1].at  # when the next one took it


def test_promotions_that_read_the_same_holder_overtake_one_another_in_the_order_seen() -> None:
    """v2 and v3 both read v1 holding; v3 was seen holding first, then v2's write won."""
    raced = [stint("1", "a", 1), stint("2", "b", 9, "1", "a"), stint("3", "c", 5, "1", "a")]
    done = {c.version: c for c in closures(raced, "2", "2030-02-01T00:00:00Z")}
    assert set(done) == {"1", "3"}  # never the holder
    assert (done["1"].by_version, done["1"].note) == ("3", "")
    assert (done["3"].by_version, done["3"].note) == ("2", OVERTAKEN)


def test_a_promotion_that_lost_the_alias_to_no_promotion_says_so_without_naming_one() -> None:
    moved = closures([stint("1", "a", 1)], "7", "2030-02-01T00:00:00Z")
    assert [(c.by_version, c.note) for c in moved] == [
        ("", "lost the alias outside a promotion; v7 held it when this was found")
    ]
    assert not closures([stint("1", "a", 1)], "1", "2030-02-01T00:00:00Z")


def test_a_version_deployed_into_the_alias_is_replaced_by_the_first_promotion_after_it() -> None:
    after = [stint("5", "e", 4, "4", ""), stint("6", "f", 3, "4", "")]
    found = unpromoted_predecessors(after, "5")
    assert list(found) == ["4"] and (found["4"].by_version, found["4"].of) == ("6", "")
    assert not unpromoted_predecessors(after, "4")  # the holder is never closed


def test_reconcile_records_a_promotion_its_promote_left_unrecorded_then_nothing_more() -> None:
    reg = InMemoryRegistry()
    for _ in range(2):
        reg.create_version(NAME, reg.add_run(None), {}, "")
    first = intent("a1")
    reg.set_version_tags(NAME, "1", first.promoted_tags(ALIAS, 1.0))
    second = intent("b2", "1", "a1")
    reg.set_version_tags(NAME, "2", second.intent_tags(ALIAS))
    reg.set_alias(NAME, ALIAS, "2")  # then the promote of v2 died
    holder, lines = reconcile(reg, NAME, ALIAS)
    assert holder is not None and holder.version == "2"
    assert len(lines) == 2 and "recorded now" in lines[0], lines
    assert lines[1] == f"v1 replaced as @{ALIAS} by v2"
    check_consistent(reg, NAME, ALIAS)
    assert reconcile(reg, NAME, ALIAS)[1] == []


def test_the_holder_takes_the_alias_from_the_last_one_seen_even_when_seen_before_it() -> None:
    """v1's promote noted its moment late (descheduled): v2 holds, so v2 took it."""
    late = [stint("1", "a", 5), stint("2", "b", 3)]
    done = closures(late, "2", "2030-02-01T00:00:00Z")
    assert [(c.version, c.by_version, c.note) for c in done] == [("1", "2", OVERTAKEN)]


class _RecordLandsBeforeTheAliasRead(InMemoryRegistry):
    """A racing promote records its promotion after reconcile read the promoted versions and
    before it reads the alias."""

    def __init__(self, version: str, tags: dict[str, str]) -> None:
        super().__init__()
        self.pending: tuple[str, dict[str, str]] | None = (version, tags)

    def get_version_by_alias(self, name: str, alias: str) -> VersionRecord | None:
        if self.pending is not None:
            self.set_version_tags(name, *self.pending)
            self.pending = None
        return super().get_version_by_alias(name, alias)


def test_reconcile_never_leaves_a_promotion_without_its_taker_when_the_holder_lands_midway() -> (
    None
):
    racer = intent("b2")  # read no holder, like v1's promote
    reg = _RecordLandsBeforeTheAliasRead("2", racer.promoted_tags(ALIAS, 2.0))
    for _ in range(2):
        reg.create_version(NAME, reg.add_run(None), {}, "")
    reg.set_version_tags(NAME, "1", intent("a1").promoted_tags(ALIAS, 1.0))
    reg.set_version_tags(NAME, "2", racer.intent_tags(ALIAS))
    reg.set_alias(NAME, ALIAS, "2")
    holder, lines = reconcile(reg, NAME, ALIAS)
    assert holder is not None and holder.version == "2"
    assert lines == [f"v1 replaced as @{ALIAS} by v2 ({OVERTAKEN})"], lines
    check_consistent(reg, NAME, ALIAS)
