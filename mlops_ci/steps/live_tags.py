"""The live figures `quality` measured, kept on each version in the registry (``mlops.live.*``
tags) so `lineage` shows them next to the offline ones the comparison recorded.

Per version that answered or shadowed labelled requests: each metric, the labelled rows and
when; the shadow also gets the live comparison's verdict, the version it was judged against
and the paired bootstrap's interval; production its health against the gate's bounds. A later
`quality` run replaces them (the figures are of the latest window, and say when), emptying
those it does not set.
"""

from __future__ import annotations

import time
from typing import Any

from mlops_ci.errors import InputError
from mlops_ci.registry import ModelRegistry

LIVE = "mlops.live."


def live_tags(record: dict[str, Any]) -> dict[str, dict[str, str]]:
    """Version -> its ``mlops.live.*`` tags, from quality.json's record."""
    at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(float(record["created_at"])))
    out: dict[str, dict[str, str]] = {}
    for version, figures in (record.get("versions") or {}).items():
        tags = {f"{LIVE}{m}": f"{v:.6g}" for m, v in (figures.get("metrics") or {}).items()}
        out[str(version)] = {**tags, f"{LIVE}rows": str(figures.get("rows", 0)), f"{LIVE}at": at}
    comparison = record.get("comparison") or {}
    candidate = out.get(str(comparison.get("candidate")))
    if candidate is not None:
        candidate[f"{LIVE}verdict"] = str(comparison.get("verdict"))
        candidate[f"{LIVE}against"] = str(comparison.get("production"))
        sig = comparison.get("significance") or {}
        if sig:
            candidate[f"{LIVE}interval"] = (
                f"{sig['metric']} {sig['difference']:+.4f} "
                f"[{sig['ci_low']:+.4f}, {sig['ci_high']:+.4f}] at {sig['confidence']:.0%}"
            )
    health = record.get("production_health") or {}
    production = out.get(str(health.get("version")))
    if production is not None:
        production[f"{LIVE}health"] = str(health.get("verdict"))
    return out


def record_live(registry: ModelRegistry, name: str, record: dict[str, Any]) -> list[str]:
    """Tag each version the record measured, emptying the ``mlops.live.*`` tags an earlier run
    left that this one does not set (a verdict of a version no longer the shadow, a metric no
    longer evaluated: MLflow tags are set, not removed, here); the versions the registry does
    not hold (served from a package folder of another registry) are returned, not tagged."""
    absent = []
    for version, tags in live_tags(record).items():
        try:
            found = registry.get_version(name, version)
        except InputError:
            absent.append(version)
            continue
        stale = {k: "" for k, v in found.tags.items() if k.startswith(LIVE) and v and k not in tags}
        registry.set_version_tags(name, version, {**stale, **tags})
    return absent
