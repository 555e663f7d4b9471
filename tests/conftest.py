from __future__ import annotations

from pathlib import Path

import pytest

from mlops_ci.config.types import Config, load_config
from tests.support.fakes import InMemoryRegistry
from tests.support.store import copy_example


@pytest.fixture(scope="session", autouse=True)
def _own_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> None:
    """mlops-ci's user cache (validated configs) in the run's temp folder, not in ~/.cache."""
    import os

    os.environ["MLOPS_CI_CACHE_DIR"] = str(tmp_path_factory.mktemp("mlops-ci-cache"))


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh copy of the iris example; MLFLOW_TRACKING_URI unset so its own config counts."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return copy_example(tmp_path / "iris")


@pytest.fixture
def config(project: Path) -> Config:
    return load_config(project)


@pytest.fixture
def fake_registry() -> InMemoryRegistry:
    return InMemoryRegistry()
