"""lineage: one version's whole audit trail, from what the steps already recorded.

From which commit, data and environment it was trained, by which CI run and actor (the run's
tags and its ``lineage/`` artifacts); how it compared (the verdict, metrics and bootstrap
interval register copied onto the version); who registered, approved, promoted, deployed and
rolled it back, when and why, in time order (the version's tags and the deployment records on
its run); and where it serves now. What no step recorded is listed as missing, never guessed.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from mlops_ci.config.types import Config
from mlops_ci.errors import InputError
from mlops_ci.registry import (
    TAG_VERDICT,
    ModelRegistry,
    RunRecord,
    deploy_states,
    resolve_version,
    tag_map,
)
from mlops_ci.report import markdown as md
from mlops_ci.steps.deploy import SERVING_STATES
from mlops_ci.steps.live_tags import LIVE

MANIFEST_ARTIFACT = "lineage/inputs.manifest.json"


@dataclass(frozen=True)
class Event:
    at: str  # ISO 8601, UTC (as every step writes it)
    what: str
    by: str
    detail: str = ""


@dataclass(frozen=True)
class AuditTrail:
    name: str
    version: str
    aliases: tuple[str, ...]
    run_id: str | None
    source: str
    trained: dict[str, str]  # commit, branch, repository, data, environment, CI run, actor...
    params: dict[str, str]
    inputs: dict[str, str] | None  # the input manifest (path -> sha256), None when absent
    compared: dict[str, str]  # verdict, baseline, metrics, interval, evaluation data
    events: list[Event]
    serving: dict[str, str]  # environment -> status (serving / ab) and where
    missing: list[str] = field(default_factory=list)
    live: dict[str, str] = field(default_factory=dict)  # `quality`'s figures on live requests

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


# tag -> how the trail names it (training provenance, in this order)
_TRAINED = {
    "mlops.git.commit": "commit",
    "mlops.git.branch": "branch",
    "mlops.git.repository": "repository",
    "mlops.git.dirty": "uncommitted changes",
    "mlops.data.fingerprint": "data fingerprint",
    "mlops.env.sha256": "environment lock sha256",
    "mlops.env.python": "python",
    "mlops.ci.provider": "ci",
    "mlops.ci.run_url": "ci run",
    "mlops.ci.actor": "triggered by",
    "mlops.ci.pr": "pull request",
    # a model trained elsewhere (train --model PATH)
    "mlops.model.handed_in": "handed in",
    "mlops.model.source": "handed-in file",
    "mlops.model.sha256": "handed-in sha256",
    "mlops.model.handed_in_by": "handed in by",
}
_ESSENTIAL = ("commit", "data fingerprint", "environment lock sha256")


def lineage(config: Config, registry: ModelRegistry, ref: str) -> AuditTrail:
    """The audit trail of version ``ref`` (a number or ``@alias``)."""
    name = config.model.name
    version = resolve_version(registry, name, ref)
    tags = version.tags
    missing: list[str] = []
    run: RunRecord | None = None
    if version.run_id:
        try:
            run = registry.get_run(version.run_id)
        except InputError:  # a deleted run: the version still has the rest of its trail
            missing.append(f"run {version.run_id}: no longer in the registry")
    else:
        missing.append("run: the version names no MLflow run")
    source_tags = {**tags, **(run.tags if run else {})}
    trained = {label: source_tags[key] for key, label in _TRAINED.items() if source_tags.get(key)}
    if source_tags.get("mlops.ci.provider") == "local" and source_tags.get("mlops.registered_by"):
        trained.setdefault("triggered by", source_tags["mlops.registered_by"])
    missing += [f"{label}: not recorded" for label in _ESSENTIAL if label not in trained]
    inputs = _manifest(registry, run) if run else None
    if run and inputs is None:
        missing.append(f"input manifest: no {MANIFEST_ARTIFACT} on the run")
    compared = _compared(tags)
    if TAG_VERDICT not in tags:
        missing.append("comparison: no verdict recorded (registered without mlops-ci register?)")
    elif "interval" not in compared and tags.get("mlops.compare.baseline_version"):
        missing.append("bootstrap interval: not recorded (registered by an older mlops-ci)")
    events = _events(registry, tags, run)
    serving = {
        env: f"{state} at {tags.get(f'mlops.deploy.{env}.url') or '?'}"
        for env, state in deploy_states(tags).items()
        if state in SERVING_STATES
    }
    return AuditTrail(
        name=name,
        version=version.version,
        aliases=tuple(sorted(version.aliases)),
        run_id=version.run_id,
        source=version.source,
        trained=trained,
        params=dict(sorted(run.params.items())) if run else {},
        inputs=inputs,
        compared=compared,
        events=events,
        serving=serving,
        missing=missing,
        live={k.removeprefix(LIVE): v for k, v in sorted(tags.items()) if k.startswith(LIVE) and v},
    )


def _manifest(registry: ModelRegistry, run: RunRecord) -> dict[str, str] | None:
    text = registry.read_artifact_text(run.run_id, MANIFEST_ARTIFACT)
    try:
        loaded = json.loads(text) if text else None
    except ValueError:
        return None
    return {str(k): str(v) for k, v in loaded.items()} if isinstance(loaded, dict) else None


def _compared(tags: dict[str, str]) -> dict[str, str]:
    out = {}
    for key, label in (
        (TAG_VERDICT, "verdict"),
        ("mlops.forced", "forced"),
        ("mlops.compare.baseline_version", "against version"),
        ("mlops.compare.interval", "interval"),
        ("mlops.compare.data_sha256", "evaluation data sha256"),
    ):
        if tags.get(key):
            out[label] = tags[key]
    for key, value in sorted(tags.items()):
        if key.startswith("mlops.metric."):
            out[key.removeprefix("mlops.metric.")] = value
    return out


def _events(registry: ModelRegistry, tags: dict[str, str], run: RunRecord | None) -> list[Event]:
    events = []
    if tags.get("mlops.registered_at"):
        forced = " (forced past the gate)" if tags.get("mlops.forced") == "true" else ""
        events.append(
            Event(
                tags["mlops.registered_at"],
                "registered",
                tags.get("mlops.registered_by") or tags.get("mlops.ci.actor") or "?",
                f"verdict {tags.get(TAG_VERDICT, '?')}{forced}",
            )
        )
    for scope, kind in (("approval", "approved for "), ("promoted", "promoted to @")):
        for where, at in tag_map(tags, f"mlops.{scope}.", ".at").items():
            base = f"mlops.{scope}.{where}."
            detail = tags.get(base + "reason", "")
            if tags.get(base + "source"):
                detail += f" ({tags[base + 'source']})"
            if tags.get(base + "forced") == "true":
                detail += " (forced)"
            events.append(Event(at, kind + where, tags.get(base + "by", "?"), detail.strip()))
    for alias, at in tag_map(tags, "mlops.replaced.", ".at").items():
        base = f"mlops.replaced.{alias}."
        by = f"v{tags[base + 'by_version']}" if tags.get(base + "by_version") else "?"
        events.append(Event(at, f"replaced as @{alias}", by, tags.get(base + "note", "")))
    deployed = _deployments(registry, run) if run else []
    events += deployed
    recorded = {(e.what, e.at) for e in deployed}
    for env, status in deploy_states(tags).items():
        base = f"mlops.deploy.{env}."
        at = tags.get(base + "at", "")
        if tags.get(base + "rolled_back.by"):
            events.append(
                Event(at, f"rolled back in {env}", tags[base + "rolled_back.by"],
                      tags.get(base + "rolled_back.reason", ""))
            )  # fmt: skip
        elif (f"deployed to {env}", at) not in recorded and status not in ("rolled_back",):
            events.append(Event(at, f"{status} in {env}", tags.get(base + "by", "?"),
                                tags.get(base + "split", "")))  # fmt: skip
    return sorted(events, key=lambda e: e.at)


def _deployments(registry: ModelRegistry, run: RunRecord) -> list[Event]:
    """Each deploy of a version leaves ``deployments/ENV-STAMP.json`` on its run."""
    out = []
    for path in registry.list_artifacts(run.run_id, "deployments"):
        text = registry.read_artifact_text(run.run_id, path)
        try:
            record = json.loads(text) if text else None
        except ValueError:
            continue
        if not isinstance(record, dict) or not record.get("at"):
            continue
        split = ", ".join(f"v{v} {w:g}%" for v, w in (record.get("split") or {}).items())
        detail = f"{record.get('status', '?')}; split {split or 'none'}"
        if record.get("note"):
            detail += f"; {record['note']}"
        out.append(
            Event(str(record["at"]), f"deployed to {record.get('env', '?')}",
                  str(record.get("by") or "?"), detail)
        )  # fmt: skip
    return out


def markdown(t: AuditTrail) -> str:
    """The trail as a markdown page (every recorded value escaped)."""
    lines = [f"## {md.text(t.name)} v{t.version} — audit trail", ""]
    if t.aliases:
        lines.append("Aliases: " + ", ".join(md.code(a) for a in t.aliases))
    lines.append(f"Run: {md.code(t.run_id or 'none')} · model {md.code(t.source)}")
    lines += ["", "### Trained from", "", "| | |", "|---|---|"]
    lines += [f"| {_c(k)} | {_c(v)} |" for k, v in t.trained.items()]
    if t.params:
        params = ", ".join(f"{k}={v}" for k, v in t.params.items())
        lines.append(f"| params | {_c(params)} |")
    if t.inputs is not None:
        lines.append(f"| inputs | {len(t.inputs)} files |")
    if t.inputs:
        lines += ["", "<details><summary>Input manifest (sha256)</summary>", ""]
        lines += [f"- {md.code(path)} {md.code(sha[:16])}" for path, sha in t.inputs.items()]
        lines += ["", "</details>"]
    lines += ["", "### How it compared", "", "| | |", "|---|---|"]
    lines += [f"| {_c(k)} | {_c(v)} |" for k, v in t.compared.items()]
    lines += _live_lines(t)
    lines += ["", "### History", "", "| when (UTC) | what | by | detail |", "|---|---|---|---|"]
    lines += [f"| {_c(e.at)} | {_c(e.what)} | {_c(e.by)} | {_c(e.detail)} |" for e in t.events]
    lines += ["", "### Serving now", ""]
    lines += [f"- {md.text(env)}: {md.text(where)}" for env, where in t.serving.items()] or [
        "- nowhere"
    ]
    if t.missing:
        lines += ["", "### Not recorded", ""] + [f"- {md.text(m)}" for m in t.missing]
    return "\n".join(lines) + "\n"


_LIVE_FACTS = {
    "rows": "labelled rows",
    "at": "measured at",
    "verdict": "live comparison",
    "against": "against version",
    "interval": "interval",
    "health": "against the gate's bounds",
}


def _live_lines(t: AuditTrail) -> list[str]:
    """Each metric offline (the comparison) next to live (`quality`), then the live facts."""
    if not t.live:
        return []
    metrics = [k for k in t.live if k not in _LIVE_FACTS]
    lines = ["", "### On live requests (`mlops-ci quality`)", ""]
    lines += ["| metric | offline | live |", "|---|---|---|"]
    lines += [f"| {_c(m)} | {_c(t.compared.get(m, '–'))} | {_c(t.live[m])} |" for m in metrics]
    facts = [(label, t.live[key]) for key, label in _LIVE_FACTS.items() if key in t.live]
    lines += [""] + [f"- {md.text(label)}: {md.text(value)}" for label, value in facts]
    return lines


def _c(value: object) -> str:
    return md.cell(md.text(value))
