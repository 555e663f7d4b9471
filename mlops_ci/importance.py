"""Permutation importance of each feature, on the evaluation rows, for the report's "why".

scikit-learn's ``permutation_importance`` on the loaded model, scored with the gate's primary
metric (as mlops-ci computes it, so the numbers speak the comparison's units): how much worse
the metric gets when one column's values are shuffled, averaged over ``repeats`` shuffles.
Positive means the model leans on the feature. Bounded in time: at most ``sample_rows`` rows,
a seeded sample beyond that, and the seed fixes the shuffles, so a rerun gives the same figures.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from mlops_ci.errors import InputError
from mlops_ci.evaldata import EvaluationData
from mlops_ci.features import model_frame
from mlops_ci.metrics import METRICS, Encoded, score

if TYPE_CHECKING:
    from mlops_ci.config import Config


@dataclass(frozen=True)
class Settings:
    task: str
    metric: str
    repeats: int
    sample_rows: int
    seed: int


@dataclass(frozen=True)
class Importance:
    settings: Settings
    rows: int  # rows it was computed on
    means: dict[str, float]  # feature -> mean worsening of the metric when shuffled
    stds: dict[str, float]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @staticmethod
    def from_dict(data: dict[str, Any]) -> Importance:
        return Importance(
            Settings(**data["settings"]),
            int(data["rows"]),
            {str(k): float(v) for k, v in data["means"].items()},
            {str(k): float(v) for k, v in data["stds"].items()},
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
        config.gate.seed,
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


def permutation(model: Any, data: EvaluationData, settings: Settings, label: str) -> Importance:
    """The model's permutation importance on (a sample of) the evaluation rows."""
    from sklearn.inspection import permutation_importance

    features = model_frame(model, data.features, data.path, f"the {label}")
    target = data.target.to_numpy()
    take = sample(len(features), settings.sample_rows, settings.seed)
    if take is not None:
        features, target = features.iloc[take], target[take]
    try:
        found = permutation_importance(
            model if hasattr(model, "fit") else _Predictor(model),
            features,
            target,
            scoring=scorer(settings.task, settings.metric),
            n_repeats=settings.repeats,
            random_state=settings.seed,
        )
    except Exception as err:  # the user's model failing on shuffled rows: named, not a crash
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise InputError(f"{data.path}: permutation importance of the {label}: {first}") from None
    columns = [str(c) for c in features.columns]
    return Importance(
        settings,
        len(features),
        {c: float(v) for c, v in zip(columns, found.importances_mean, strict=True)},
        {c: float(v) for c, v in zip(columns, found.importances_std, strict=True)},
    )


class _Predictor:
    """A model with only ``predict`` (an ONNX session's wrapper) as scikit-learn wants one."""

    def __init__(self, model: Any) -> None:
        self.model = model

    def fit(self, *_: Any) -> _Predictor:
        return self

    def predict(self, features: Any) -> Any:
        return self.model.predict(features)
