"""quality.md: live quality as a reviewer reads it, rendered from the record ``quality.json``
holds (so whatever reads that record can render it again): each version's metrics on its
labelled rows, the shadow's live comparison with production and its checks, production's
health against the gate's min/max rules, what the join counted and did not use, and a mermaid
chart of the primary metric per period, a line per version.
"""

from __future__ import annotations

from typing import Any

from mlops_ci.evaluation import delta
from mlops_ci.metrics import METRICS
from mlops_ci.report import charts
from mlops_ci.report import markdown as md

# The periods a chart shows (the latest), and the versions it draws (the most rows).
CHART_PERIODS = 48
CHART_VERSIONS = 4
_ICON = {
    "pass": "✅",
    "fail": "❌",
    "inconclusive": "⚖️",
    "skipped": "➖",
    "healthy": "✅",
    "degraded": "📉",
    "too-few-rows": "⚠️",
}
_COUNTED = {
    "unlabelled_rows": "logged rows without a label",
    "unmatched_labels": "labels matching no single logged row",
    "unjoinable_rows": "logged records not one row of one version (no row index in a longer "
    "request, or a request id logged twice)",
    "no_answer_rows": "labelled records without a prediction",
    "labels_without_value": "labels with an empty target",
}


def markdown(record: dict[str, Any]) -> str:
    health = record.get("production_health")
    comparison = record.get("comparison")
    lines = [_title(record, health, comparison), "", _sources(record), ""]
    lines += _versions_table(record, health, comparison)
    if comparison:
        lines += ["", *_comparison(record, comparison)]
    if health and health["checks"]:
        lines += ["", f"#### Production v{md.text(health['version'])} against the gate's bounds"]
        lines += ["", *_checks(health["checks"])]
    chart = period_chart(record)
    if chart:
        lines += ["", *chart]
    counted = [f"{record[key]:,} {what}" for key, what in _COUNTED.items() if record.get(key)]
    if counted:
        lines += ["", "Counted, not used: " + md.text("; ".join(counted)) + "."]
    for note in [record.get("skipped_summary"), *record.get("notes", [])]:
        if note:
            lines += ["", f"⚠️ {md.text(note)}"]
    return "\n".join(lines) + "\n"


def _title(record: dict[str, Any], health: Any, comparison: Any) -> str:
    parts = []
    if health:
        verdict = health["verdict"]
        parts.append(f"production v{md.text(health['version'])} {_ICON[verdict]} **{verdict}**")
    if comparison:
        verdict = comparison["verdict"]
        parts.append(f"shadow v{md.text(comparison['candidate'])} {_ICON[verdict]} **{verdict}**")
    said = "; ".join(parts) or "no labelled row of any version"
    return f"## Live quality of {md.code(record['model'])}: {said}"


def _sources(record: dict[str, Any]) -> str:
    rows = sum(int(v["rows"]) for v in record["versions"].values())
    return (
        f"Labels {md.code(record['labels'])} ({record['labels_read']:,} read) joined to the "
        f"input log {md.code(record['current'])} by request id and row: {rows:,} labelled "
        f"answers; periods of {md.text(record['every'])}."
    )


def _role(version: str, health: Any, comparison: Any, found: dict[str, Any]) -> str:
    if comparison and version == comparison["candidate"]:
        return "candidate (shadow)"
    if health and version == health["version"]:
        return "production"
    return "shadow" if found["shadow_rows"] and not found["primary_rows"] else "primary"


def _versions_table(record: dict[str, Any], health: Any, comparison: Any) -> list[str]:
    versions: dict[str, Any] = record["versions"]
    if not versions:
        return ["No logged row has a label yet."]
    names = list(dict.fromkeys(m for v in versions.values() for m in v["metrics"]))
    header = " | ".join(md.cell(md.text(n)) for n in names)
    lines = [
        f"| version | role | labelled rows | {header} |",
        "|---|---|---:|" + "---:|" * len(names),
    ]
    for version, found in versions.items():
        values = " | ".join(_number(found["metrics"].get(n)) for n in names)
        role = _role(version, health, comparison, found)
        lines.append(f"| v{md.cell(md.text(version))} | {role} | {found['rows']:,} | {values} |")
    return lines


def _number(value: float | None) -> str:
    return "—" if value is None else delta.number(value)


def _comparison(record: dict[str, Any], c: dict[str, Any]) -> list[str]:
    verdict = c["verdict"]
    lines = [
        f"### {_ICON[verdict]} Shadow v{md.text(c['candidate'])} against production "
        f"v{md.text(c['production'])} on {c['rows']:,} paired labelled rows: **{verdict}**"
    ]
    if c.get("reason"):
        lines += ["", md.text(c["reason"]) + "."]
    metrics = c.get("metrics") or {}
    if metrics:
        lines += [
            "",
            "| metric | candidate | production | Δ (candidate − production) |",
            "|---|---:|---:|---|",
        ]
        for name, value in metrics["candidate"].items():
            prod = metrics["production"][name]
            gib = METRICS[name].greater_is_better
            lines.append(
                f"| {md.cell(md.text(name))} | {delta.number(value)} | {delta.number(prod)} | "
                f"{delta.cell(value - prod, gib)} |"
            )
    if c.get("checks"):
        lines += ["", *_checks(c["checks"])]
    return lines + _slices(c, record["primary_metric"])


def _slices(c: dict[str, Any], metric: str) -> list[str]:
    """The primary metric of both versions in each slice of the paired rows."""
    found = [s for s in c.get("slices") or [] if metric in s["candidate"]]
    if not found:
        return []
    gib = METRICS[metric].greater_is_better
    lines = [
        "",
        f"#### Slices ({md.text(metric)}; slices under {c['min_slice_rows']} rows are not judged)",
        "",
        "| slice | rows | candidate | production | Δ (candidate − production) |",
        "|---|---:|---:|---:|---|",
    ]
    for s in found:
        cand, prod = s["candidate"][metric], s["production"][metric]
        lines.append(
            f"| {md.cell(md.text(s['name']))} | {s['rows']:,} | {delta.number(cand)} | "
            f"{delta.number(prod)} | {delta.cell(cand - prod, gib)} |"
        )
    return lines


def _checks(checks: list[dict[str, Any]]) -> list[str]:
    out = ["| rule | result | detail |", "|---|---|---|"]
    for check in checks:
        status = str(check["status"])
        out.append(
            f"| {md.cell(md.text(check['name']))} | {_ICON.get(status, '')} {status} | "
            f"{md.cell(md.text(check['detail']))} |"
        )
    return out


def period_chart(record: dict[str, Any]) -> list[str]:
    """The primary metric per period, a line per version (the versions with the most labelled
    rows), over the latest periods in which each drawn version has rows (a line cannot skip
    one); none when fewer than two such periods."""
    metric = record["primary_metric"]
    versions = sorted(record["versions"], key=lambda v: -record["versions"][v]["rows"])
    drawn = sorted(versions[:CHART_VERSIONS])
    periods = [
        p
        for p in record["periods"]
        if all(metric in p["versions"].get(v, {}).get("metrics", {}) for v in drawn)
    ][-CHART_PERIODS:]
    if not drawn or len(periods) < 2:
        return []
    series = [[p["versions"][v]["metrics"][metric] for p in periods] for v in drawn]
    values = [x for line in series for x in line]
    low, high = min(0.0, *values), max(*values, 0.0)
    high = high + (high - low) * 0.1 if high > low else low + 1.0
    legend = ", ".join(f"line {i + 1}: v{v}" for i, v in enumerate(drawn))
    skipped = len(record["periods"]) - len(periods)
    said = f" ({skipped} period(s) without rows of each version not drawn)" if skipped else ""
    return [
        f"{md.text(metric)} per period of {md.text(record['every'])} (UTC start); "
        f"{md.text(legend)}{said}",
        "",
        "```mermaid",
        "xychart-beta",
        f'    title "{md.mermaid(f"{metric} per period, {legend}")}"',
        f"    x-axis [{', '.join(charts.category(p['start'][5:16]) for p in periods)}]",
        f'    y-axis "{md.mermaid(metric)}" {charts.number(low)} --> {charts.number(high)}',
        *(f"    line [{', '.join(charts.number(x) for x in line)}]" for line in series),
        "```",
    ]


def live_section(record: dict[str, Any], offline: dict[str, dict[str, float]]) -> str:
    """The pull request's report section: each version's primary metric offline (``offline``:
    version -> the comparison's metrics) beside live, the verdicts, and the chart per period."""
    metric = record["primary_metric"]
    health, comparison = record.get("production_health"), record.get("comparison")
    lines = [f"### {_title(record, health, comparison).removeprefix('## ')}", "", _sources(record)]
    versions: dict[str, Any] = record["versions"]
    if versions:
        name = md.cell(md.text(metric))
        lines += [
            "",
            f"| version | role | {name} offline | {name} live | labelled rows |",
            "|---|---|---:|---:|---:|",
        ]
        for version, found in versions.items():
            role = _role(version, health, comparison, found)
            before = _number((offline.get(version) or {}).get(metric))
            now = _number(found["metrics"].get(metric))
            lines.append(
                f"| v{md.cell(md.text(version))} | {role} | {before} | {now} | {found['rows']:,} |"
            )
    if comparison and comparison.get("significance"):
        sig = comparison["significance"]
        lines += [
            "",
            f"Live {md.text(sig['metric'])} difference, shadow − production: "
            f"{sig['difference']:+.4f}, {sig['confidence']:.0%} interval "
            f"[{sig['ci_low']:+.4f}, {sig['ci_high']:+.4f}] on {comparison['rows']:,} paired rows.",
        ]
    chart = period_chart(record)
    return "\n".join(lines + (["", *chart] if chart else []))
