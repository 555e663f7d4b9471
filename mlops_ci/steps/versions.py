"""versions and tag: find a model's versions by what the steps (or people) tagged them with.

The tag filters go to the registry (MLflow's ``search_model_versions`` filter string), so a
registry of thousands of versions answers with an indexed query rather than a full listing.
Each row carries what a reviewer scans for: aliases, the comparison's verdict, the primary
metric, who registered it and when, and where it is deployed.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any

from mlops_ci.config.types import Config
from mlops_ci.errors import InputError
from mlops_ci.registry import (
    TAG_VERDICT,
    ModelRegistry,
    VersionRecord,
    deploy_states,
    resolve_version,
)

# MLflow's own rule for tag keys (alphanumerics, underscores, dashes, periods, spaces, slashes).
_KEY = re.compile(r"^[A-Za-z0-9_\-. /]{1,250}$")
RESERVED_PREFIXES = ("mlops.", "mlflow.")


@dataclass(frozen=True)
class VersionRow:
    version: str
    aliases: tuple[str, ...]
    verdict: str | None
    metric: str  # the gate's primary metric
    value: str | None  # its value, as register recorded it
    registered_at: str | None
    registered_by: str | None
    deployed: dict[str, str]  # environment -> its recorded deploy status
    tags: dict[str, str]  # the user's own tags (outside mlops./mlflow.)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def reserved(key: str) -> bool:
    """Whether a tag key is in a namespace the tools write (MLflow compares keys as written,
    so ``MLOPS.verdict`` would pass for ``mlops.verdict`` to a reader; it is refused too)."""
    return key.lower().startswith(RESERVED_PREFIXES)


def parse_pairs(
    pairs: tuple[str, ...] | list[str], option: str, search: bool = False
) -> dict[str, str]:
    """``KEY=VALUE`` arguments as a dict; a malformed one is bad input naming it. For a
    search (``search``), a value with a quote, backtick or backslash is refused here: it
    would end its string in MLflow's filter."""
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise InputError(f"{option} '{pair}': expected KEY=VALUE")
        if not _KEY.match(key):
            raise InputError(
                f"{option} '{pair}': a tag key is letters, digits, _ - . / and spaces (at most 250)"
            )
        if search and any(c in value for c in "'`\\"):
            raise InputError(f"{option} '{pair}': a value to search for cannot hold ' ` or \\")
        out[key] = value
    return out


def versions(
    config: Config,
    registry: ModelRegistry,
    tags: dict[str, str] | None = None,
    alias: str | None = None,
    verdict: str | None = None,
    limit: int = 20,
) -> list[VersionRow]:
    """The model's versions newest first, filtered by tags (on the registry's side), by the
    comparison verdict register recorded, and by alias."""
    name = config.model.name
    wanted = dict(tags or {})
    if verdict:
        wanted[TAG_VERDICT] = verdict
    if alias:
        held = resolve_version(registry, name, "@" + alias)
        found = [held] if all(held.tags.get(k) == v for k, v in wanted.items()) else []
    else:
        if not registry.has_model(name):
            raise InputError(
                f"there is no model '{name}' in {registry.describe()}",
                hint="check model.name in mlops.yaml, or register a version first",
            )
        found = registry.search_versions(name, wanted, limit)
    metric = config.gate.primary_metric
    return [_row(v, metric) for v in found[:limit]]


def _row(v: VersionRecord, metric: str) -> VersionRow:
    return VersionRow(
        version=v.version,
        aliases=tuple(sorted(v.aliases)),
        verdict=v.tags.get(TAG_VERDICT),
        metric=metric,
        value=v.tags.get(f"mlops.metric.{metric}"),
        registered_at=v.tags.get("mlops.registered_at"),
        registered_by=v.tags.get("mlops.registered_by") or v.tags.get("mlops.ci.actor"),
        deployed=deploy_states(v.tags),
        tags={k: t for k, t in sorted(v.tags.items()) if not reserved(k)},
    )
