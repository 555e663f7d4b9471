"""Session fixtures for the serving tests: two versions of the iris model, registered in a real
MLflow SQLite store and packaged (ONNX, parity-checked) once per test run."""

from __future__ import annotations

import fcntl
import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
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
    """Made once per test run: under pytest-xdist the first worker to ask makes it in the
    run's own temporary folder while the other waits, then both use it. The tests read these
    folders and the store, and copy what they change."""
    folder = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):  # each worker's basetemp is in the run's
        folder = folder.parent
    made = folder / "packaged.json"
    with _locked(folder / "packaged.lock"):
        if not made.exists():
            built = _package_two_versions(Path(tempfile.mkdtemp(dir=folder)) / "iris")
            made.write_text(json.dumps([str(built.project), str(built.v1), str(built.v2)]))
    project, v1, v2 = map(Path, json.loads(made.read_text()))
    rows = pd.read_csv(project / "data" / "test.csv").drop(columns=["species"])
    return Packaged(project, v1, v2, rows)


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    with path.open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _package_two_versions(dest: Path) -> Packaged:
    """The example's logistic regression (v1) and a 20-tree forest (v2), each registered and
    packaged."""
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        project = copy_example(dest)
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
