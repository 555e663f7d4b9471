"""Permutation importance of each feature, on the evaluation rows, for the report's "why".

scikit-learn's ``permutation_importance`` on the loaded model, scored with the gate's primary
metric (as mlops-ci computes it, so the numbers speak the comparison's units): how much worse
the metric gets when one column's values are shuffled, averaged over ``repeats`` shuffles.
Positive means the model leans on the feature. The seed fixes the sample and the shuffles, so
a rerun gives the same figures.

Bounded in time (``evaluate.importance.max_seconds``): one scoring of the rows is timed first,
and when features x repeats scorings would not fit the budget, the repeats are lowered, then
the rows sampled further, then neighbouring features shuffled together in groups — each step
said in the result's ``plan.note``. scikit-learn gets, instead of the features, one column of
row positions per feature (or group) and a model that gathers the rows those positions name:
shuffling a position column is shuffling its feature, with exactly scikit-learn's shuffles, and
it lets the work go in chunks that report progress.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from mlops_ci.errors import InputError
from mlops_ci.evaluation.data import EvaluationData
from mlops_ci.metrics import METRICS, Encoded, score
from mlops_ci.model.features import model_frame

if TYPE_CHECKING:
    from mlops_ci.config.types import Config


@dataclass(frozen=True)
class Settings:
    task: str
    metric: str
    repeats: int
    sample_rows: int
    seed: int
    max_seconds: float = 10.0  # budget of one model's importance; 0: none


@dataclass(frozen=True)
class Plan:
    """What was computed, against what the settings asked."""

    repeats: int
    rows: int
    features: int
    groups: int  # features shuffled together in this many groups (== features: one each)
    # what the settings as given would have taken (from the timed scoring), and what it took:
    # timings, so not part of what makes two results equal
    estimate_s: float = field(compare=False)
    seconds: float = field(compare=False)
    note: str = ""  # what was lowered to fit the budget; "" when nothing was


@dataclass(frozen=True)
class Importance:
    settings: Settings
    rows: int  # rows it was computed on
    means: dict[str, float]  # feature (or group) -> mean worsening of the metric when shuffled
    stds: dict[str, float]
    plan: Plan | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @staticmethod
    def from_dict(data: dict[str, Any]) -> Importance:
        plan = data.get("plan")
        return Importance(
            Settings(**data["settings"]),
            int(data["rows"]),
            {str(k): float(v) for k, v in data["means"].items()},
            {str(k): float(v) for k, v in data["stds"].items()},
            Plan(**plan) if isinstance(plan, dict) else None,
        )

    def finite(self) -> bool:
        return all(math.isfinite(v) for v in [*self.means.values(), *self.stds.values()])

    def ranks(self) -> dict[str, int]:
        """1 for the feature the model leans on most."""
        order = sorted(self.means, key=lambda f: (-self.means[f], f))
        return {f: i + 1 for i, f in enumerate(order)}


def settings_for(config: Config) -> Settings | None:
    """The settings evaluate.importance and the gate give (None: importance is off)."""
    spec = config.evaluate.importance
    if not spec.enabled:
        return None
    return Settings(
        config.model.task, config.gate.primary_metric, spec.repeats, spec.sample_rows,
        config.gate.seed, spec.max_seconds,
    )  # fmt: skip


def scorer(task: str, metric: str) -> Any:
    """A scikit-learn scorer (greater is better) computing ``metric`` as compare does."""
    sign = 1.0 if METRICS[metric].greater_is_better else -1.0

    def call(estimator: Any, features: Any, y: Any) -> float:
        enc, (pred,) = Encoded.of(task, y, np.asarray(estimator.predict(features)))
        return sign * score(metric, enc, pred)

    return call


def sample(rows: int, limit: int, seed: int) -> np.ndarray[Any, Any] | None:
    """Row positions of a seeded sample of ``limit`` rows; None when all rows are used."""
    if rows <= limit:
        return None
    return np.sort(np.random.default_rng(seed).choice(rows, size=limit, replace=False))


Progress = Callable[[int, int], None]  # (features or groups done, in all)
# Rows the budget may sample down to, at the least.
MIN_ROWS = 200
# Progress is reported (and the budget looked at) this many times at most.
CHUNKS = 10


def permutation(
    model: Any,
    data: EvaluationData,
    settings: Settings,
    label: str,
    budget_s: float | None = None,
    progress: Progress | None = None,
) -> Importance:
    """The model's permutation importance on (a sample of) the evaluation rows, within
    ``budget_s`` seconds (default: ``settings.max_seconds``; 0: no budget)."""
    started = time.perf_counter()
    if not hasattr(data.features, "iloc"):  # a tensor model's arrays (model.tensors.Tensors)
        raise InputError(
            f"{data.path}: permutation importance shuffles a table's columns; the {label} "
            "model takes tensors",
            hint="set evaluate.importance.enabled: false",
        )
    features = model_frame(model, data.features, data.path, f"the {label}")
    target = data.target.to_numpy()
    take = sample(len(features), settings.sample_rows, settings.seed)
    if take is not None:
        features, target = features.iloc[take], target[take]
    features = features.reset_index(drop=True)
    budget = settings.max_seconds if budget_s is None else budget_s
    try:
        plan, features, target = _plan(model, features, target, settings, budget)
        groups = groups_of(list(features.columns), plan.groups)
        means, stds = _run(model, features, target, groups, plan.repeats, settings, progress)
    except InputError:
        raise
    except Exception as err:  # the user's model failing on shuffled rows: named, not a crash
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise InputError(f"{data.path}: permutation importance of the {label}: {first}") from None
    plan = dataclasses.replace(plan, seconds=time.perf_counter() - started)
    return Importance(settings, len(features), means, stds, plan)


def _plan(
    model: Any, features: Any, target: Any, settings: Settings, budget: float
) -> tuple[Plan, Any, Any]:
    """How much fits the budget: the settings as given, else fewer repeats, else fewer rows
    (a seeded sample, at least ``MIN_ROWS``), else features in groups. Also the rows to use."""
    n = features.shape[1]
    per_call = _time_scoring(model, features, target, settings)
    estimate = n * settings.repeats * per_call
    asked = f"{n} features x {settings.repeats} repeats on {len(features):,} rows"

    def plan(repeats: int, rows: int, groups: int, note: str) -> Plan:
        return Plan(repeats, rows, n, groups, estimate, 0.0, note)

    if budget <= 0 or estimate <= budget or n == 0:
        return plan(settings.repeats, len(features), n, ""), features, target
    why = (
        f"{asked} would take about {estimate:.1f} s, over evaluate.importance.max_seconds "
        f"{budget:g} s"
    )
    repeats = int(budget // (n * per_call))
    if repeats >= 1:
        note = f"{why}: {repeats} repeat(s) instead of {settings.repeats}"
        return plan(repeats, len(features), n, note), features, target
    rows = max(MIN_ROWS, int(len(features) * budget / (n * per_call)))
    if rows < len(features):
        take = np.sort(np.random.default_rng(settings.seed).choice(len(features), rows, False))
        features, target = features.iloc[take].reset_index(drop=True), target[take]
        per_call = _time_scoring(model, features, target, settings)
    if n * per_call <= budget:
        note = f"{why}: 1 repeat on a sample of {len(features):,} rows"
        return plan(1, len(features), n, note), features, target
    groups = max(1, int(budget // per_call))
    note = (
        f"{why}: 1 repeat on {len(features):,} rows, neighbouring features shuffled together "
        f"in {groups} groups"
    )
    return plan(1, len(features), groups, note), features, target


def _time_scoring(model: Any, features: Any, target: Any, settings: Settings) -> float:
    """Seconds of one scoring of the rows (the faster of two: the first may warm caches)."""
    score_with = scorer(settings.task, settings.metric)
    gather = _Gather(model, features)
    positions = gather.identity()
    times = []
    for _ in range(2):
        start = time.perf_counter()
        score_with(gather, positions, target)
        times.append(time.perf_counter() - start)
    return max(min(times), 1e-6)


def groups_of(columns: list[Any], count: int) -> dict[str, list[Any]]:
    """Exactly ``count`` groups of neighbouring columns (sizes differ by at most one), named by
    their first and last columns; one group per column when ``count`` is the number of columns."""
    if count >= len(columns):
        return {str(c): [c] for c in columns}
    size, extra = divmod(len(columns), count)
    out: dict[str, list[Any]] = {}
    start = 0
    for i in range(count):
        part = columns[start : start + size + (1 if i < extra else 0)]
        start += len(part)
        name = str(part[0]) if len(part) == 1 else f"{part[0]} … {part[-1]} ({len(part)} features)"
        out[name] = part
    return out


def _run(
    model: Any,
    features: Any,
    target: Any,
    groups: dict[str, list[Any]],
    repeats: int,
    settings: Settings,
    progress: Progress | None,
) -> tuple[dict[str, float], dict[str, float]]:
    """scikit-learn's permutation_importance over the groups' position columns, in chunks."""
    from sklearn.inspection import permutation_importance

    gather = _Gather(model, features, groups)
    positions = gather.identity()
    names = list(groups)
    size = max(1, math.ceil(len(names) / CHUNKS))
    means: dict[str, float] = {}
    stds: dict[str, float] = {}
    if progress is not None:
        progress(0, len(names))
    for start in range(0, len(names), size):
        part = names[start : start + size]
        found = permutation_importance(
            gather,
            positions[part],
            target,
            scoring=scorer(settings.task, settings.metric),
            n_repeats=repeats,
            random_state=settings.seed,
        )
        means.update(zip(part, (float(v) for v in found.importances_mean), strict=True))
        stds.update(zip(part, (float(v) for v in found.importances_std), strict=True))
        if progress is not None:
            progress(start + len(part), len(names))
    return means, stds


class _Gather:
    """What scikit-learn permutes: one column of row positions per group of features. Scoring
    it scores the model on the rows, each group's features taken from the rows its column
    names (a column never shuffled names every row in order). Columns absent from what it is
    given stay as they are (a chunk of the groups)."""

    def __init__(
        self, model: Any, features: Any, groups: dict[str, list[Any]] | None = None
    ) -> None:
        self.model = model
        self.features = features
        self.groups = groups or {str(c): [c] for c in features.columns}
        self.order = np.arange(len(features))

    def identity(self) -> Any:
        import pandas as pd

        return pd.DataFrame({name: self.order for name in self.groups})

    def fit(self, *_: Any) -> _Gather:
        return self

    def predict(self, positions: Any) -> Any:
        frame = self.features
        for name in positions.columns:
            rows = positions[name].to_numpy()
            if np.array_equal(rows, self.order):
                continue
            if frame is self.features:
                frame = self.features.copy()
            for column in self.groups[name]:
                moved = self.features[column].iloc[rows]
                moved.index = frame.index
                frame[column] = moved
        return self.model.predict(frame)
