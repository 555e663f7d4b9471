"""Session fixtures for the serving tests: two versions of the iris model, registered in a real
MLflow SQLite store and packaged (ONNX, parity-checked) once per session."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest

from mlops_ci.config.types import load_config
from mlops_ci.registry.mlflow import MlflowRegistry
from mlops_ci.steps.compare import compare
from mlops_ci.steps.package import package
from mlops_ci.steps.register import register
from mlops_ci.steps.train import train
from tests.support.store import copy_example

FAST_PROFILE = "  profile: {single_row_runs: 20, batch_sizes: [1, 64]}\n"


@dataclass(frozen=True)
class Packaged:
    project: Path
    v1: Path  # logistic regression, package folder (model/)
    v2: Path  # 20-tree random forest
    test_rows: pd.DataFrame  # evaluation features, in model order


@pytest.fixture(scope="session")
def packaged(tmp_path_factory: pytest.TempPathFactory) -> Packaged:
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        project = copy_example(tmp_path_factory.mktemp("serve") / "iris")
        config_file = project / "mlops.yaml"
        config_file.write_text(config_file.read_text() + FAST_PROFILE)
        config = load_config(project)
        reg = MlflowRegistry.for_config(config)
        folders = []
        for params in ({}, {"model": "forest", "n_estimators": 20}):
            run = train(config, reg, overrides=params)
            compare(config, reg, run.run_id)
            registered = register(config, reg, run.run_id, force=True)
            result = package(config, reg, registered.version, build=False)
            folders.append(Path(result.context) / "model")
        rows = pd.read_csv(project / "data" / "test.csv").drop(columns=["species"])
        return Packaged(project, folders[0], folders[1], rows)
