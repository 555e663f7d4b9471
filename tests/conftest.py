from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from mlops_ci.config.types import Config, load_config
from tests.support.fakes import InMemoryRegistry
from tests.support.store import copy_example

# Roughly how long one test of each kind takes in CI, in seconds: an act workflow run, an image
# built on the engine, a test that trains and serves models (marked slow), another test that
# starts processes or servers, a unit test.
_SECONDS = {"workflow": 60.0, "docker": 40.0, "slow": 15.0, "integration": 3.0, "unit": 0.1}


def _seconds(item: pytest.Item) -> float:
    folder = item.nodeid.split("/", 2)[1] if item.nodeid.startswith("tests/") else ""
    if folder == "workflows":
        return _SECONDS["workflow"]
    for mark in ("docker", "slow"):
        if item.get_closest_marker(mark) is not None:
            return _SECONDS[mark]
    return _SECONDS["integration" if folder in ("integration", "actions") else "unit"]


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The longest work units first. pytest-xdist (--dist loadscope, pyproject) gives a worker
    a module or a class at a time, in this order (--no-loadscope-reorder; its own order, by
    number of tests, put the act workflow modules of one or two tests last, so one worker ran
    them while the other had nothing left): long first, the two workers end together on unit
    tests. A unit's tests keep their order."""
    units: dict[str, list[pytest.Item]] = {}
    for item in items:
        units.setdefault(item.nodeid.rsplit("::", 1)[0], []).append(item)  # xdist's scope
    ordered = sorted(units.values(), key=lambda unit: -sum(map(_seconds, unit)))
    items[:] = [item for unit in ordered for item in unit]


@pytest.fixture(scope="session", autouse=True)
def _own_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> None:
    """mlops-ci's user cache (validated configs) in the run's temp folder, not in ~/.cache."""
    import os

    os.environ["MLOPS_CI_CACHE_DIR"] = str(tmp_path_factory.mktemp("mlops-ci-cache"))


_MLFLOW_URIS = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")


@pytest.fixture(autouse=True)
def _mlflow_uris_kept() -> Iterator[None]:
    """Each test leaves the MLflow URIs in os.environ as it found them. mlflow.set_tracking_uri
    writes its URI there: left behind, every later registry opened in this worker would honour
    it (a server gone by then), and a test's verdict would hang on the order of the suite."""
    import os

    before = {k: os.environ.get(k) for k in _MLFLOW_URIS}
    yield
    for key, was in before.items():
        if was is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = was


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
