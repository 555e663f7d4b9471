"""Mermaid xychart blocks (GitHub renders them in comments and job summaries, no image host).

Categories are always written as quoted strings: a bare category that is a mermaid keyword
(``line``, ``bar``, ``title``) or holds a space breaks or merges the chart. Metrics of very
different sizes (an rmse of 120,000 beside an r2 of 0.27) are drawn on charts of their own, so
each is readable on its axis.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from mlops_ci.report import markdown as md

# Metrics share a chart while the largest is at most this many times the smallest.
SCALE_RATIO = 10.0


def number(value: float) -> str:
    """Six significant digits, never in exponent form (mermaid cannot parse ``8.4e-06``)."""
    return str(np.format_float_positional(value, precision=6, fractional=False, trim="-"))


def category(name: object) -> str:
    """One x-axis category: a quoted string holding nothing that could end it."""
    return f'"{md.mermaid(name)}"'


def xychart(
    title: str,
    categories: Sequence[str],
    bars: Sequence[float],
    line: Sequence[float] | None,
    y_label: str,
) -> list[str]:
    """One fenced chart: ``bars`` (and ``line``) over ``categories``, the y-axis spanning 0 and
    every value."""
    values = [*bars, *(line or [])]
    low = min(0.0, *values)
    high = max(0.0, *values)
    if high == low:
        high = low + 1.0
    elif high > 0:
        high += (high - low) * 0.1
    lines = [
        "```mermaid",
        "xychart-beta",
        f'    title "{md.mermaid(title)}"',
        f"    x-axis [{', '.join(category(c) for c in categories)}]",
        f'    y-axis "{md.mermaid(y_label)}" {number(low)} --> {number(high)}',
        f"    bar [{', '.join(number(v) for v in bars)}]",
    ]
    if line is not None:
        lines.append(f"    line [{', '.join(number(v) for v in line)}]")
    lines.append("```")
    return lines


def by_scale(sizes: dict[str, float]) -> list[list[str]]:
    """The names grouped so that within a group the largest size is at most ``SCALE_RATIO``
    times the smallest (sizes of 0 join the smallest group); groups from small to large, the
    names of a group in the order given."""
    order = sorted(sizes, key=lambda n: (abs(sizes[n]), n))
    groups: list[list[str]] = []
    floor = 0.0
    for name in order:
        size = abs(sizes[name])
        if groups and (floor == 0.0 or size <= floor * SCALE_RATIO):
            groups[-1].append(name)
            floor = floor or size
            continue
        groups.append([name])
        floor = size
    position = {name: i for i, name in enumerate(sizes)}  # each group in the given order
    return [sorted(group, key=position.__getitem__) for group in groups]


def metric_charts(
    model: str, candidate: dict[str, float], production: dict[str, float] | None
) -> list[str]:
    """One chart per scale of the metrics: candidate as bars, production as a line."""
    names = [m for m in candidate if math.isfinite(candidate[m])]
    if production is not None:
        names = [m for m in names if math.isfinite(production.get(m, math.nan))]
    sizes = {m: max(abs(candidate[m]), abs(production[m]) if production else 0.0) for m in names}
    groups = by_scale(sizes)
    blocks: list[str] = []
    for i, group in enumerate(groups):
        title = f"{model}: candidate (bars) vs production (line)" if production else model
        if len(groups) > 1:
            title += f" ({i + 1} of {len(groups)})"
        if blocks:
            blocks.append("")
        blocks += xychart(
            title,
            group,
            [candidate[m] for m in group],
            [production[m] for m in group] if production else None,
            "value",
        )
    return blocks


def stages_flowchart(graph: dict[str, object]) -> list[str]:
    """A mermaid flowchart of a pipeline's stages (``lineage/stages.json``): an arrow from each
    stage to the stages that read its outs; each box says whether the stage ran (and how long)
    or was cached; the training stage is marked."""
    stages = graph.get("stages")
    if not isinstance(stages, list) or not stages:
        return []
    ids = {str(s.get("name")): f"s{i}" for i, s in enumerate(stages) if isinstance(s, dict)}
    lines = ["```mermaid", "flowchart LR"]
    for stage in stages:
        if not isinstance(stage, dict):
            continue
        name = str(stage.get("name"))
        state = str(stage.get("state", ""))
        seconds = stage.get("seconds")
        done = f"ran {float(seconds):.1f} s" if state == "ran" and seconds is not None else state
        model = " · model" if name == graph.get("training") else ""
        label = md.mermaid(f"{name}{model} · {done}")
        css = "ran" if state == "ran" else "cached"
        lines.append(f'  {ids[name]}["{label}"]:::{css}')
    for stage in stages:
        if isinstance(stage, dict):
            for upstream in stage.get("upstream") or []:
                if str(upstream) in ids:
                    lines.append(f"  {ids[str(upstream)]} --> {ids[str(stage.get('name'))]}")
    lines += [
        "  classDef ran fill:#fff4d6,stroke:#b7791f",
        "  classDef cached fill:#e6f4ea,stroke:#2f855a",
        "```",
    ]
    return lines
