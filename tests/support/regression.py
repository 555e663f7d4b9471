"""A refused regression: a candidate whose rmse is worse than production's, on features
named like mermaid keywords (the report and chart tests share it)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mlops_ci.config.types import Config, load_config
from tests.support.fakes import InMemoryRegistry

# Features named like mermaid keywords, with a space, and unicode.
FEATURES = ["line", "bar", "title", "a b", "größe"]


class Noisy:
    """A regressor answering the target plus seeded noise of a given size."""

    def __init__(self, target: pd.Series, scale: float, seed: int) -> None:
        self.answers = target.to_numpy() + np.random.default_rng(seed).normal(0, scale, len(target))

    def predict(self, features: Any) -> Any:
        return self.answers + 0.01 * features["line"].to_numpy()  # leans on 'line'


def regression(tmp_path: Path) -> tuple[Config, InMemoryRegistry, str]:
    """rmse around 120,000 beside r2 around 0.3: production better than the candidate."""
    rng = np.random.default_rng(1)
    frame = pd.DataFrame(rng.normal(size=(300, len(FEATURES))), columns=FEATURES)
    frame["price"] = 150_000 * rng.normal(size=300)
    (tmp_path / "data").mkdir()
    frame.to_csv(tmp_path / "data" / "test.csv", index=False)
    (tmp_path / "mlops.yaml").write_text(
        "version: 1\nmodel: {name: houses, task: regression}\ntrain: {command: python t.py}\n"
        "evaluate: {data: data/test.csv, target: price, metrics: [rmse, mae, r2]}\n"
        "gate:\n  rules:\n    - {metric: rmse, must: not_worse_than_production, tolerance: 0.005}\n"
    )
    config = load_config(tmp_path)
    target = frame["price"]
    reg = InMemoryRegistry()
    prod_run = reg.add_run(Noisy(target, 118_000, 2))
    prod_run.params.update({"n_estimators": "300", "max_depth": "8"})
    version = reg.create_version("houses", prod_run, {}, "")
    reg.set_alias("houses", "production", version.version)
    cand_run = reg.add_run(Noisy(target, 125_000, 3))
    cand_run.params.update({"n_estimators": "3", "max_depth": "2"})
    return config, reg, cand_run.run_id
