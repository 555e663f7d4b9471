"""promote: move the production alias to a version, recording who did it, when and why.

The alias write is the act, and the records say only what happened (steps/promotion_records.py
has the journal): the target carries an intent before the write and its ``promoted`` record
only once the alias is read back naming it. A write whose answer was lost is judged by that
read-back too: moved, it is a promotion (exit 0, saying so); not moved, nothing is recorded
(exit 3). Every promote first finishes what an earlier one left (killed, cut off, or racing
this one), so the history converges on the truth whichever call died where.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass

from mlops_ci.config.types import Config
from mlops_ci.errors import GateFailed, ServiceError
from mlops_ci.registry import TAG_VERDICT, ModelRegistry, VersionRecord, resolve_version
from mlops_ci.steps.gates import now_iso
from mlops_ci.steps.promotion_records import (
    Intent,
    Stint,
    promoted_key,
    reconcile,
)

_PROMOTABLE = {"pass", "no-baseline"}


@dataclass(frozen=True)
class PromoteResult:
    name: str
    version: str
    alias: str
    previous: str | None
    by: str
    reason: str
    at: str
    unchanged: bool = False  # the version already held the alias, promoted: nothing moved
    answer_lost: bool = False  # the alias write failed to answer; the read-back showed it moved
    overtaken_by: str | None = None  # a concurrent promotion moved the alias on right after
    recorded: tuple[str, ...] = ()  # records this promote wrote, one line each
    unrecorded: str | None = None  # the alias moved but writing its records failed: why


def promote(
    config: Config,
    registry: ModelRegistry,
    version: str,
    by: str,
    reason: str,
    force: bool = False,
) -> PromoteResult:
    """``version`` is a number or ``@alias`` (e.g. ``@candidate``)."""
    name = config.model.name
    alias = config.registry.production_alias
    target = resolve_version(registry, name, version)
    verdict = target.tags.get(TAG_VERDICT)
    if verdict not in _PROMOTABLE and not force:
        raise GateFailed(
            f"{name} v{target.version} has comparison verdict '{verdict or 'none'}'; not promoting",
            hint="promote a version that passed compare, or pass --force (recorded)",
        )
    holder, earlier = reconcile(registry, name, alias)
    if holder is not None and holder.version == target.version and _promoted(holder, alias):
        return _already(name, alias, holder, earlier)
    intent = Intent.new(by, reason, force, holder, alias, now_iso())
    registry.set_version_tags(name, target.version, intent.intent_tags(alias))
    sent = time.time()
    lost: ServiceError | None = None
    try:
        registry.set_alias(name, alias, target.version)
    except ServiceError as err:
        lost = err
    moved, after = _read_back(registry, name, alias, target.version, lost)
    result = PromoteResult(
        name,
        target.version,
        alias,
        intent.previous or None,
        by,
        reason,
        intent.at,
        answer_lost=lost is not None,
        overtaken_by=None if moved else after,
        recorded=tuple(earlier),
    )
    return _record(registry, result, intent, time.time() if moved else sent)


def _read_back(
    registry: ModelRegistry, name: str, alias: str, version: str, lost: ServiceError | None
) -> tuple[bool, str]:
    """(whether the alias names ``version``, else the version it names: "" none). A write the
    registry answered did move it, even when the read-back fails; one it did not answer moved
    it only if the read-back says so, and is an outside failure otherwise (nothing recorded:
    the next promote records it if it lands later)."""
    try:
        after = registry.get_version_by_alias(name, alias)
    except ServiceError as err:
        if lost is None:
            return True, ""
        raise ServiceError(
            f"{lost}; and reading alias '{alias}' back failed too ({err}): whether it moved to "
            f"v{version} is not known; nothing recorded",
            hint="run the same promote again: it finds where the alias points and records it",
        ) from None
    if after is not None and after.version == version:
        return True, ""
    if lost is not None:
        now = f"v{after.version}" if after else "no version"
        raise ServiceError(
            f"{lost}; read back, alias '{alias}' names {now}, not v{version}: not promoted, "
            "nothing recorded",
            hint=lost.hint,
        )
    return False, after.version if after else ""


def _promoted(holder: VersionRecord, alias: str) -> bool:
    """The holder's promotion is recorded and still open: promoting it again moves nothing."""
    stint = Stint.of(holder, alias)
    return stint is not None and not stint.closed


def _already(name: str, alias: str, holder: VersionRecord, earlier: list[str]) -> PromoteResult:
    tags = holder.tags
    stint = Stint.of(holder, alias)
    return PromoteResult(
        name,
        holder.version,
        alias,
        (stint.previous if stint else "") or None,
        tags.get(promoted_key(alias, "by"), "?"),
        tags.get(promoted_key(alias, "reason"), ""),
        tags.get(promoted_key(alias, "at"), ""),
        unchanged=True,
        recorded=tuple(earlier),
    )


def _record(
    registry: ModelRegistry, result: PromoteResult, intent: Intent, seen: float
) -> PromoteResult:
    """The promotion's record, then what it implies for the others. The alias has moved: a
    registry that fails now is reported, not raised, and the next promote finishes it."""
    name, alias = result.name, result.alias
    try:
        # Overtaken, it held the alias from its write to the next one: the reconcile below
        # closes it at the promotion seen holding next (it may have read this one holding).
        registry.set_version_tags(name, result.version, intent.promoted_tags(alias, seen))
        _, lines = reconcile(registry, name, alias)
    except ServiceError as err:
        return dataclasses.replace(result, unrecorded=str(err))
    return dataclasses.replace(result, recorded=result.recorded + tuple(lines))
