"""A project whose rows fall in two groups, and models answering a fixed label per row: the
candidate better on average and worse for one group."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mlops_ci.config.types import Config, load_config
from mlops_ci.steps.compare import compare
from tests.support.fakes import InMemoryRegistry


class Lookup:
    """A model that answers a fixed label per row id (the feature ``rid``)."""

    def __init__(self, answers: dict[int, int]) -> None:
        self.answers = answers

    def predict(self, features: Any) -> Any:
        return np.array([self.answers[int(r)] for r in features["rid"]])


def grouped_project(tmp_path: Path, rule: str, min_rows: int = 30) -> tuple[Config, Lookup, Lookup]:
    """200 rows in groups A (150) and B (50). Production: 30 mistakes in A, none in B (0.85).
    Candidate: none in A, 15 in B (0.925): better on average, worse for group B."""
    rid = np.arange(200)
    group = np.where(rid < 150, "A", "B")
    label = rid % 2
    (tmp_path / "data").mkdir()
    pd.DataFrame({"rid": rid, "group": group, "label": label}).to_csv(
        tmp_path / "data" / "test.csv", index=False
    )
    (tmp_path / "mlops.yaml").write_text(
        "version: 1\nmodel: {name: grouped}\ntrain: {command: python train.py}\n"
        "evaluate: {data: data/test.csv, target: label, features: [rid], metrics: [accuracy],"
        " slices: [group]}\n"
        f"gate:\n  min_slice_rows: {min_rows}\n  rules:\n    - {rule}\n"
    )
    production = {int(r): int(label[r] if not (r < 30) else 1 - label[r]) for r in rid}
    candidate = {int(r): int(label[r] if not (150 <= r < 165) else 1 - label[r]) for r in rid}
    return load_config(tmp_path), Lookup(candidate), Lookup(production)


def run_compare(config: Config, candidate: Lookup, production: Lookup) -> Any:
    reg = InMemoryRegistry()
    prod_run = reg.add_run(production)
    version = reg.create_version(config.model.name, prod_run, {}, "")
    reg.set_alias(config.model.name, "production", version.version)
    run = reg.add_run(candidate)
    return compare(config, reg, run.run_id)


NOT_WORSE = "{metric: accuracy, must: not_worse_than_production, tolerance: 0.02"
