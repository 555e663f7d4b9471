"""promote: move the production alias to a version, recording who did it, when and why."""

from __future__ import annotations

import time
from dataclasses import dataclass

from mlops_ci.config.types import Config
from mlops_ci.errors import GateFailed
from mlops_ci.registry import TAG_VERDICT, ModelRegistry, resolve_version

_PROMOTABLE = {"pass", "no-baseline"}


def _record_lost_races(registry: ModelRegistry, name: str, alias: str, at: str) -> None:
    """Promotions racing each other all read the same previous version, so a version promoted
    and then overtaken by a concurrent promotion would end with neither the alias nor a
    `replaced` record. After its own alias write, every promotion records `replaced` on each
    version promoted since it was last replaced that no longer holds the alias; the last
    promotion to write the alias thus accounts for all the others."""
    holder = registry.get_version_by_alias(name, alias)
    if holder is None:
        return
    promoted, replaced = f"mlops.promoted.{alias}.at", f"mlops.replaced.{alias}.at"
    for version in registry.find_versions_with_tag(name, promoted):
        if version.version == holder.version:
            continue
        if version.tags.get(replaced, "") < version.tags[promoted]:
            registry.set_version_tags(
                name,
                version.version,
                {
                    replaced: at,
                    f"mlops.replaced.{alias}.by_version": holder.version,
                    f"mlops.replaced.{alias}.note": "overtaken by a concurrent promotion",
                },
            )


@dataclass(frozen=True)
class PromoteResult:
    name: str
    version: str
    alias: str
    previous: str | None
    by: str
    reason: str
    at: str


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
    previous = registry.get_version_by_alias(name, alias)
    at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    registry.set_version_tags(
        name,
        target.version,
        {
            f"mlops.promoted.{alias}.by": by,
            f"mlops.promoted.{alias}.at": at,
            f"mlops.promoted.{alias}.reason": reason,
            f"mlops.promoted.{alias}.forced": str(force).lower(),
        },
    )
    registry.set_alias(name, alias, target.version)
    if previous is not None and previous.version != target.version:
        registry.set_version_tags(
            name,
            previous.version,
            {
                f"mlops.replaced.{alias}.at": at,
                f"mlops.replaced.{alias}.by_version": target.version,
            },
        )
    _record_lost_races(registry, name, alias, at)
    return PromoteResult(
        name, target.version, alias, previous.version if previous else None, by, reason, at
    )
