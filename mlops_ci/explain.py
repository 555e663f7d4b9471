"""The "why" of a comparison as markdown: which features each model leans on, and which groups
of rows (slices) the change helps or hurts. Shared by comparison.md and the PR report."""

from __future__ import annotations

from typing import TYPE_CHECKING

from mlops_ci import charts, delta
from mlops_ci import markdown as md
from mlops_ci.metrics import METRICS

if TYPE_CHECKING:
    from mlops_ci.steps.compare import ComparisonResult

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
