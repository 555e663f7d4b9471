"""One rollout step on an endpoint that routes by weight: set the split, send probe requests,
scrape the metrics before and after the window, and judge (``rollout.judge``) the version
going in against the one serving beside it.

The deploy step walks the rollout's steps with it, and the deploy journal judges, with the
same rules, the version a killed deploy left at 100 % before finishing that deploy.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from mlops_ci.config.types import Config, DeployEnv
from mlops_ci.targets import rollout
from mlops_ci.targets.base import RoutedTarget

Progress = Callable[[str], None]


@dataclass(frozen=True)
class StepRecord:
    percent: float
    weights: dict[str, float]
    passed: bool
    judged: bool
    reasons: tuple[str, ...]
    new: rollout.VersionWindow
    current: rollout.VersionWindow | None


def judge_step(
    target: RoutedTarget,
    env: DeployEnv,
    new: str,
    current: str | None,
    percent: float,
    split: dict[str, float],
    rows: list[Any],
    progress: Progress,
) -> StepRecord:
    """Route by ``split``, probe both versions over ``env.rollout.window_seconds`` and judge."""
    rules = env.rollout
    target.set_split(split)
    progress(
        f"step {percent:g} %: split {split_text(split)}; judging for {rules.window_seconds:g}s"
    )
    started = time.monotonic()
    before = rollout.parse_metrics(target.metrics_text())
    target.probe(new, rows)
    if current is not None:
        target.probe(current, rows[: max(1, len(rows) // 2)])
    time.sleep(max(0.0, rules.window_seconds - (time.monotonic() - started)))
    after = rollout.parse_metrics(target.metrics_text())
    new_window = rollout.window(new, before, after)
    current_window = rollout.window(current, before, after) if current is not None else None
    health = rollout.judge(new_window, current_window, rules)
    progress(
        f"step {percent:g} %: v{new} {new_window.requests} requests, "
        f"5xx {new_window.error_rate:.1%}, p99 {_ms(new_window.p99_ms)}"
        + (f"; v{current} p99 {_ms(current_window.p99_ms)}" if current_window else "")
        + (" — healthy" if health.passed else f" — unhealthy: {'; '.join(health.reasons)}")
    )
    return StepRecord(
        percent, split, health.passed, health.judged, health.reasons, new_window, current_window
    )


def probe_rows(config: Config, count: int, columns: tuple[str, ...]) -> list[Any]:
    """``count`` rows of evaluate.data for probe requests: records of the served columns
    (text columns stay text), or plain rows where the package names no columns."""
    from mlops_ci.evaluation.data import load_table

    if count == 0:
        return []
    import pandas as pd

    features = load_table(config, "deploy's probe requests").features
    rows: list[Any] = (
        [  # a missing value is JSON's null (pandas' NA has no JSON form)
            {k: None if pd.isna(v) else v for k, v in record.items()}
            for record in features[list(columns)].astype(object).to_dict("records")
        ]
        if columns and set(columns) <= set(features.columns)
        else features.to_numpy(dtype=float).tolist()
    )
    return [rows[i % len(rows)] for i in range(count)]


def died(target: RoutedTarget, err: Exception, grace: float = 3.0) -> str:
    """Why the endpoint stopped answering, when it is dead; a live endpoint that refused a
    call re-raises the error, which says which. A killed process resets its connections
    before it is gone from the process table, so a dying one is given ``grace`` seconds."""
    deadline = time.monotonic() + grace
    while target.running():
        if time.monotonic() >= deadline:
            raise err
        time.sleep(0.05)
    return str(err).splitlines()[0][:200]


def split_text(split: Mapping[str, float]) -> str:
    return ", ".join(f"v{v} {w:g}%" for v, w in split.items()) or "none"


def _ms(value: float | None) -> str:
    return "n/a" if value is None else f"≤{value:g} ms"
