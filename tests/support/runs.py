"""Runs of the iris example in the in-memory registry: a candidate, a version in production,
and the record `mlops-ci train` leaves."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
from sklearn.linear_model import LogisticRegression

from mlops_ci.config.types import Config
from mlops_ci.registry import RunRecord
from tests.support.fakes import InMemoryRegistry


def fit(project: Path, c: float) -> Any:
    train = pd.read_csv(project / "data" / "train.csv")
    return LogisticRegression(C=c, max_iter=1000).fit(
        train.drop(columns=["species"]), train["species"]
    )


def candidate_run(reg: InMemoryRegistry, project: Path, c: float = 1.0) -> RunRecord:
    return reg.add_run(fit(project, c), {"cv_accuracy": 0.95}, **{"mlops.git.commit": "abc"})


def in_production(reg: InMemoryRegistry, config: Config, c: float = 1.0) -> str:
    run = candidate_run(reg, config.root, c)
    version = reg.create_version(config.model.name, run, {"mlops.compare.verdict": "pass"}, "")
    reg.set_alias(config.model.name, "production", version.version)
    return version.version


def record_train(config: Config, run_id: str | None, error: str | None = None) -> None:
    """.mlops/train.json as `mlops-ci train` leaves it after a success or a failure."""
    from mlops_ci.records import JobFolder, write_json_atomic

    record = {"status": "failed", "run_id": None, "error": error} if error else {"run_id": run_id}
    write_json_atomic(JobFolder(config.root).train, {"status": "finished", **record})
