"""A comparison as markdown: the table and checks of comparison.md, what changed, the cost of
serving, and the why — which features each model leans on, and which groups of rows (slices)
the change helps or hurts. Shared by comparison.md and the PR report."""

from __future__ import annotations

from typing import Any

from mlops_ci.evaluation import delta
from mlops_ci.evaluation.comparison import FAIL, NO_BASELINE, PASS, ComparisonResult
from mlops_ci.metrics import COST_METRICS, METRICS
from mlops_ci.report import charts
from mlops_ci.report import markdown as md

# A feature whose rank moved by more than this many places is marked.
RANK_MOVE = 3


def importance_lines(c: ComparisonResult, top: int = 10) -> list[str]:
    """Top features of both models side by side (a table and a mermaid chart, no image host)."""
    failed = c.evaluation.get("importance_failed") or {}
    notes = [
        f"> Permutation importance of the {md.text(r)}: {md.text(w)}" for r, w in failed.items()
    ]
    cand = c.importance.get("candidate")
    if cand is None:
        return notes
    prod = c.importance.get("production")
    cand_rank = cand.ranks()
    prod_rank = prod.ranks() if prod else {}
    shown = [f for f, r in cand_rank.items() if r <= top]
    shown += [f for f, r in sorted(prod_rank.items(), key=lambda x: x[1]) if r <= top]
    shown = sorted(dict.fromkeys(shown), key=lambda f: (cand_rank.get(f, 10**9), f))
    metric = md.text(cand.settings.metric)
    lines = [
        f"#### Why: permutation importance ({metric} lost when a feature is shuffled; "
        f"{cand.rows} rows, {cand.settings.repeats} repeats, seed {cand.settings.seed})",
        "",
        "| feature | candidate (rank) | " + ("production (rank) | rank move |" if prod else ""),
        "|---|---:|" + ("---:|---|" if prod else ""),
    ]
    for feature in shown:
        row = f"| {md.cell(md.text(feature))} | {_value(cand.means, cand_rank, feature)} |"
        if prod:
            moved = _move(feature, cand_rank, prod_rank)
            row += f" {_value(prod.means, prod_rank, feature)} | {moved} |"
        lines.append(row)
    lines += [
        "",
        *charts.xychart(
            "Permutation importance: candidate (bars) vs production (line)",
            shown,
            [cand.means.get(f, 0.0) for f in shown],
            [prod.means.get(f, 0.0) for f in shown] if prod else None,
            f"{cand.settings.metric} lost",
        ),
    ]
    return [*lines, *([""] + notes if notes else [])]


def _value(means: dict[str, float], ranks: dict[str, int], feature: str) -> str:
    if feature not in means:
        return "— (not a feature)"
    return f"{means[feature]:+.4f} ({ranks[feature]})"


def _move(feature: str, cand: dict[str, int], prod: dict[str, int]) -> str:
    if feature not in cand or feature not in prod:
        return "new" if feature in cand else "dropped"
    moved = prod[feature] - cand[feature]  # positive: the candidate leans on it more
    if moved == 0:
        return ""
    text = f"{'▲' if moved > 0 else '▼'}{abs(moved)}"
    return f"⚠️ {text}" if abs(moved) > RANK_MOVE else text


def why_lines(c: ComparisonResult, top: int = 10) -> list[str]:
    """Both sections, each after a blank line: what comparison.md and the report show."""
    lines: list[str] = []
    for section in (importance_lines(c, top), slice_lines(c)):
        if section:
            lines += ["", *section]
    return lines


def slice_lines(c: ComparisonResult) -> list[str]:
    """One table per slice column: rows, both models' primary metric and the change (the
    metric and the minimum rows are those the comparison judged the slices with)."""
    if not c.slices:
        return []
    metric = c.evaluation.get("primary_metric") or next(iter(c.candidate.metrics))
    min_rows = int(c.evaluation["min_slice_rows"])
    gib = METRICS[metric].greater_is_better
    lines = [f"#### Slices ({md.text(metric)}; slices under {min_rows} rows are not judged)"]
    for column in dict.fromkeys(s.column for s in c.slices):
        lines += [
            "",
            f"| {md.cell(md.code(column))} | rows | candidate |"
            + (" production | Δ (candidate − production) |" if c.production else ""),
            "|---|---:|---:|" + ("---:|---:|" if c.production else ""),
        ]
        for s in (s for s in c.slices if s.column == column):
            value = s.candidate[metric]
            row = f"| {md.cell(md.text(s.value))} | {s.rows} | {value:.4f} |"
            if s.production is not None:
                p = s.production[metric]
                shown = delta.cell(value - p, gib)
                if s.rows < min_rows:  # not judged: no colour
                    shown = shown.removesuffix(" 🔴").removesuffix(" 🟢")
                row += f" {p:.4f} | {shown} |"
            lines.append(row)
    return lines


def change_lines(changes: dict[str, Any]) -> list[str]:
    """What changed, as markdown lines: the params, the commit and the data that differ (for a
    comparison with production)."""
    if changes.get("unknown"):
        return ["What changed: unknown (the production version has no run to compare with)."]

    def shown(value: str | None) -> str:
        return "unset" if value is None else md.code(value)

    lines = ["**What changed** (production → candidate):"]
    for name, (before, after) in (changes.get("params") or {}).items():
        lines.append(f"- param {md.code(name)}: {shown(before)} → {shown(after)}")
    for key, label in (("commit", "code commit"), ("data_fingerprint", "data fingerprint")):
        if key in changes:
            before, after = changes[key]
            lines.append(
                f"- {label}: {shown(before and before[:12])} → {shown(after and after[:12])}"
            )
    if changes.get("stages"):
        names = md.text(", ".join(changes["stages"]))
        lines.append(f"- pipeline stages with other inputs: {names}")
    if len(lines) == 1:
        return ["What changed: no param, code commit or data fingerprint differs."]
    return lines


def cost_lines(result: ComparisonResult) -> list[str]:
    """The cost table: both models' figures, the change relative to production and its words,
    and how they were measured."""
    record = result.evaluation.get("cost")
    if not record:
        return []
    cand, prod = result.candidate, result.production
    runtimes = record["runtime"]
    head = f"| cost | candidate ({md.text(runtimes['candidate'])}) |"
    rule = "|---|---:|"
    if prod is not None:
        served = md.text(runtimes["production"])
        head += f" production v{md.cell(md.text(prod.version))} ({served}) | Δ |"
        rule += "---:|---|"
    lines = ["#### Cost of serving (measured here, both models on the same rows)", "", head, rule]
    for name, spec in COST_METRICS.items():
        value = cand.cost.get(name)
        if value is None:
            continue
        row = f"| {name} | {_cost_value(value, spec.unit)} |"
        if prod is not None and name in prod.cost:
            theirs = prod.cost[name]
            gap = delta.relative_gap(value, theirs, spec.greater_is_better).removeprefix("Δ ")
            row += f" {_cost_value(theirs, spec.unit)} | {md.cell(gap)} |"
        lines.append(row)
    calls = ", ".join(f"{role} {n:,}" for role, n in record["calls"].items())
    lines += [
        "",
        f"Single-row calls of the two models interleaved, {record['rounds']} rounds of "
        f"{record['round_seconds']:g} s per model ({calls} calls), each model first in every "
        "other step, percentiles over all the rounds' calls; rows/s on interleaved batches of "
        f"{record['batch_rows']:,} rows; peak RSS of a fresh "
        "scoring process; size of the files served.",
    ]
    lines += [f"> {md.text(role)}: {md.text(note)}" for role, note in record["note"].items()]
    providers = record.get("provider") or {}
    if providers:
        ran = ", ".join(f"{role} on {md.text(p)}" for role, p in providers.items())
        lines += [f"> ONNX execution provider: {ran}"]
    return lines


def _cost_value(value: float, unit: str) -> str:
    if unit == "MiB" and value < 1:
        return f"{value * 1024:,.1f} KiB"
    if unit == "rows/s":
        return f"{value:,.0f} rows/s"
    return f"{value:.3f} ms" if unit == "ms" else f"{value:,.1f} {unit}"


def _recorded(result: ComparisonResult) -> str:
    """Which predictions train recorded on these very rows (said, never silently reused)."""
    scored = result.evaluation.get("scored") or {}
    roles = [role for role, how in scored.items() if how == "at train"]
    return f"; predictions of the {' and '.join(roles)} as train recorded them" if roles else ""


def feature_change_lines(change: dict[str, list[str]] | None) -> list[str]:
    if not change:
        return []
    parts = []
    if change.get("added"):
        parts.append("adds " + ", ".join(md.code(c) for c in change["added"]))
    if change.get("removed"):
        parts.append("drops " + ", ".join(md.code(c) for c in change["removed"]))
    return [
        "",
        f"Feature set changed: the candidate {' and '.join(parts)}; each model was scored "
        "with the columns it was trained on.",
    ]


def markdown(result: ComparisonResult, top: int = 10) -> str:
    """A short table for PR comments and job summaries, then the why: importance, slices."""
    icon = {PASS: "✅", FAIL: "❌", NO_BASELINE: "🆕", "skipped": "➖"}
    prod = result.production
    c = md.cell
    lines = [
        f"### {icon[result.verdict]} {md.code(result.model)}: verdict **{result.verdict}**",
        "",
        f"Both models scored on {md.code(result.evaluation['data'])} "
        f"({result.evaluation['rows']} rows, sha256 "
        f"{md.code(str(result.evaluation['sha256'])[:12])}){_recorded(result)}.",
        *feature_change_lines(result.evaluation.get("feature_change")),
        *(["", *change_lines(result.changes)] if prod is not None else []),
        "",
        f"| metric | candidate (run {c(md.code(result.candidate.run_id))}) | "
        + (
            f"production (v{c(md.text(prod.version))}) | Δ (candidate − production) |"
            if prod
            else "production |"
        ),
        "|---|---|---|" + ("---|" if prod else ""),
    ]
    for metric, value in result.candidate.metrics.items():
        name = c(md.text(metric))
        if prod:
            p = prod.metrics[metric]
            gap = delta.cell(value - p, METRICS[metric].greater_is_better)
            lines.append(f"| {name} | {value:.4f} | {p:.4f} | {gap} |")
        else:
            lines.append(f"| {name} | {value:.4f} | — |")
    if result.checks:
        lines += ["", "| check | result | detail |", "|---|---|---|"]
        lines += [
            f"| {c(md.text(ch.name))} | {icon[ch.status]} {ch.status} | {c(md.text(ch.detail))} |"
            for ch in result.checks
        ]
    costs = cost_lines(result)
    return "\n".join([*lines, *([""] + costs if costs else []), *why_lines(result, top)]) + "\n"
