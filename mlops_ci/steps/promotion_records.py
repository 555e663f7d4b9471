"""What the versions say about an alias's promotions, kept true after kills, lost answers and
races.

MLflow has no compare-and-set for an alias, and a promote can die between any two calls, so the
records are a journal that any later promote can finish:

- before its alias write a promote leaves an *intent* on the target (``mlops.promoting.ALIAS``,
  one JSON tag: who, why, and the holder it read, ``previous``);
- once the alias is read back naming the target, the intent becomes the target's *promotion*
  (``mlops.promoted.ALIAS.{by,reason,forced,at}`` as lineage reads them, and ``.journal``: its
  id, ``previous``, and ``seen``, a moment it was known to hold the alias). An intent on the
  version that holds the alias is a promotion whose promote stopped before recording it: the
  next promote records it. An intent anywhere else claims nothing (its write may never have
  landed);
- ``mlops.replaced.ALIAS.*`` closes one promotion (``of``: its id) and is derived, never guessed
  ahead: a promoted version that no longer holds the alias was replaced by the promotion next
  seen holding it after it; "overtaken by a concurrent promotion" only when that promotion had
  read another holder than this version, i.e. both ran at once. The version holding the alias
  is never closed.

A promotion's ``journal`` (its id, ``previous``, ``seen``) and a replaced record's ``of`` are
written last, so one cut off half-way reads as not written. Records from before journals take
their ``at`` as their id.
"""

from __future__ import annotations

import calendar
import dataclasses
import json
import time
import uuid
from dataclasses import dataclass

from mlops_ci.errors import InputError
from mlops_ci.registry import ModelRegistry, VersionRecord

OVERTAKEN = "overtaken by a concurrent promotion"
_FIELDS = ("by", "reason", "forced", "previous", "previous_id", "at")


def promoted_key(alias: str, field: str) -> str:
    return f"mlops.promoted.{alias}.{field}"


def intent_key(alias: str) -> str:
    return f"mlops.promoting.{alias}"


def _replaced_key(alias: str, field: str) -> str:
    return f"mlops.replaced.{alias}.{field}"


@dataclass(frozen=True)
class Intent:
    """One promotion: who, why, and the holder it read before its alias write."""

    id: str
    by: str
    reason: str
    forced: str  # "true" / "false", as recorded
    previous: str  # the version that held the alias ("" none)
    previous_id: str  # that version's promotion id ("" none recorded)
    at: str

    @classmethod
    def new(
        cls, by: str, reason: str, forced: bool, holder: VersionRecord | None, alias: str, at: str
    ) -> Intent:
        previous = holder.version if holder else ""
        previous_id = (promotion_id(holder.tags, alias) or "") if holder else ""
        return cls(
            uuid.uuid4().hex[:16], by, reason, str(forced).lower(), previous, previous_id, at
        )

    def intent_tags(self, alias: str) -> dict[str, str]:
        """The intent: one tag (JSON), so it is written whole or not at all."""
        fields = {f: getattr(self, f) for f in ("id", *_FIELDS)}
        return {intent_key(alias): json.dumps(fields, separators=(",", ":"))}

    def promoted_tags(self, alias: str, seen: float) -> dict[str, str]:
        """The promotion record: who, why and when as lineage reads them, then its journal
        (one JSON tag, written last: id, the holder it replaced, when it was seen holding)."""
        tags = {promoted_key(alias, f): getattr(self, f) for f in ("by", "reason", "forced", "at")}
        journal = {"id": self.id, "previous": self.previous, "previous_id": self.previous_id}
        journal["seen"] = f"{seen:.6f}"
        return {**tags, promoted_key(alias, "journal"): json.dumps(journal, separators=(",", ":"))}


def _journal(tags: dict[str, str], alias: str) -> dict[str, str] | None:
    try:
        found = json.loads(tags.get(promoted_key(alias, "journal")) or "null")
    except ValueError:
        return None
    if not isinstance(found, dict) or not isinstance(found.get("id"), str):
        return None
    return {k: str(v) for k, v in found.items()}


def promotion_id(tags: dict[str, str], alias: str) -> str | None:
    """The id of the version's recorded promotion (its ``at`` for records from before ids)."""
    journal = _journal(tags, alias)
    if journal is not None:
        return journal["id"]
    at = tags.get(promoted_key(alias, "at"))
    return f"at:{at}" if at else None


def unfinished_intent(version: VersionRecord, alias: str) -> Intent | None:
    """The intent on ``version`` that was never recorded as a promotion, if any."""
    try:
        fields = json.loads(version.tags.get(intent_key(alias)) or "null")
        found = Intent(**{f: str(fields[f]) for f in ("id", *_FIELDS)})
    except (ValueError, TypeError, KeyError):  # none, or not one mlops-ci wrote
        return None
    if found.id == promotion_id(version.tags, alias):
        return None
    if found.previous == version.version:
        return None  # it read this version holding already: moving the alias changed nothing
    return found


def move_alias(
    registry: ModelRegistry,
    name: str,
    alias: str,
    version: str,
    production_alias: str,
    was: str | None,
) -> None:
    """A verb other than promote (deploy, rollback) points ``alias`` at ``version`` (it named
    ``was``). Where that moves the production alias, an intent a failed or killed promote left
    on ``version`` is cleared: the next promote would take it for that promote having landed
    (a promotion by someone who never made it)."""
    registry.set_alias(name, alias, version)
    if alias != production_alias or was == version:
        return
    if unfinished_intent(registry.get_version(name, version), alias) is not None:
        registry.set_version_tags(name, version, {intent_key(alias): ""})


@dataclass(frozen=True)
class Stint:
    """A version's current promotion, as its tags record it."""

    version: str
    id: str
    at: str
    seen: float  # a moment it was known to hold the alias: orders promotions
    previous: str
    previous_id: str
    closed: bool  # its replaced record is of this promotion

    @classmethod
    def of(cls, version: VersionRecord, alias: str) -> Stint | None:
        tags = version.tags
        at = tags.get(promoted_key(alias, "at"), "")
        journal = _journal(tags, alias)
        if journal is not None:
            closed = tags.get(_replaced_key(alias, "of")) == journal["id"]
            seen = _seen(journal.get("seen"), at)
            return cls(
                version.version,
                journal["id"],
                at,
                seen,
                journal.get("previous", ""),
                journal.get("previous_id", ""),
                closed,
            )
        if not at:
            return None
        # a record from before journals: its at is its id; closed when replaced since
        closed = tags.get(_replaced_key(alias, "at"), "") >= at
        return cls(version.version, f"at:{at}", at, _seen(None, at), "", "", closed)


def _seen(value: str | None, at: str) -> float:
    try:
        return float(value) if value else float(calendar.timegm(time.strptime(at, _ISO)))
    except ValueError:
        return 0.0


_ISO = "%Y-%m-%dT%H:%M:%SZ"


@dataclass(frozen=True)
class Closure:
    """A ``replaced`` record to write: promotion ``of`` of ``version`` ended, taken by
    ``by_version`` ("" not known) at ``at``."""

    version: str
    of: str
    by_version: str
    at: str
    note: str

    def tags(self, alias: str) -> dict[str, str]:
        return {
            _replaced_key(alias, "by_version"): self.by_version,
            _replaced_key(alias, "note"): self.note,
            _replaced_key(alias, "at"): self.at,
            _replaced_key(alias, "of"): self.of,
        }

    def line(self, alias: str) -> str:
        by = f" by v{self.by_version}" if self.by_version else ""
        note = f" ({self.note})" if self.note else ""
        return f"v{self.version} replaced as @{alias}{by}{note}"


def closures(stints: list[Stint], holder: str | None, now: str) -> list[Closure]:
    """The ``replaced`` records the promotions imply, oldest first: each open promotion of a
    version not holding the alias ends at the promotion seen holding it next."""
    ordered = sorted(stints, key=lambda s: (s.seen, int(s.version)))
    holding = [s for s in ordered if s.version == holder]
    out = []
    for i, stint in enumerate(ordered):
        if stint.closed or stint.version == holder:
            continue
        # the holder took it last, whenever its promote got to note the moment it was seen
        later = ordered[i + 1 :] or holding
        if not later:
            held = f"; v{holder} held it when this was found" if holder else ""
            out.append(
                Closure(
                    stint.version,
                    stint.id,
                    "",
                    max(now, stint.at),
                    f"lost the alias outside a promotion{held}",
                )
            )
            continue
        taker = later[0]
        ran_after = (taker.previous, taker.previous_id) == (stint.version, stint.id)
        out.append(
            Closure(
                stint.version,
                stint.id,
                taker.version,
                max(taker.at, stint.at),
                "" if ran_after else OVERTAKEN,
            )
        )
    return out


def unpromoted_predecessors(stints: list[Stint], holder: str | None) -> dict[str, Closure]:
    """Versions that held the alias without a promotion record (a deploy moved it, or it was
    set by hand) and were replaced by a promotion still open: the first such promotion took
    the alias from them. Keyed by version; their tags are read before anything is written."""
    promoted = {s.version for s in stints}
    first: dict[str, Stint] = {}
    for stint in sorted(stints, key=lambda s: (s.seen, int(s.version))):
        source = stint.previous
        if not source or source in promoted or source == stint.version or source == holder:
            continue
        first.setdefault(source, stint)
    live = {s.previous for s in stints if not s.closed or s.version == holder}
    return {
        v: Closure(v, s.previous_id, s.version, s.at, "") for v, s in first.items() if v in live
    }


def _recorded(version: VersionRecord, closure: Closure, alias: str) -> bool:
    tags = version.tags
    return all(tags.get(k) == v for k, v in closure.tags(alias).items() if not k.endswith(".at"))


def reconcile(
    registry: ModelRegistry, name: str, alias: str
) -> tuple[VersionRecord | None, list[str]]:
    """Finish what earlier promotes left: record the holder's unrecorded promotion, then every
    ``replaced`` the promotions imply. Returns the holder and a line per record written.

    The promotions are read before the holder, so a promotion landing in between is seen as
    the holder, never closed as one that lost the alias."""
    found = {v.version: v for v in registry.find_versions_with_tag(name, promoted_key(alias, "at"))}
    holder = registry.get_version_by_alias(name, alias)
    lines = []
    if holder is not None:
        intent = unfinished_intent(holder, alias)
        if intent is not None:
            tags = intent.promoted_tags(alias, time.time())
            registry.set_version_tags(name, holder.version, tags)
            holder = dataclasses.replace(holder, tags={**holder.tags, **tags})
            lines.append(
                f"v{holder.version} promoted to @{alias} by {intent.by} at {intent.at} "
                f"({intent.reason}): recorded now, its promote stopped before recording it"
            )
        # read after the promotions: its record may have landed in between (never closed)
        found[holder.version] = holder
    number = holder.version if holder else None
    stints = [s for s in (Stint.of(v, alias) for v in found.values()) if s is not None]
    todo = []
    for version, closure in unpromoted_predecessors(stints, number).items():
        try:
            before = registry.get_version(name, version)
        except InputError:  # deleted since
            continue
        if not _recorded(before, closure, alias):
            todo.append(closure)
    now = time.strftime(_ISO, time.gmtime())
    todo += closures(stints, number, now)
    for closure in todo:
        registry.set_version_tags(name, closure.version, closure.tags(alias))
        lines.append(closure.line(alias))
    return holder, lines
