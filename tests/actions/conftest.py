"""The Azure Pipelines task as the extension ships it: a copy of its folder with its Node
dependencies installed from its package-lock.json (``npm ci``, the npm registry)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

TASK = Path(__file__).resolve().parents[2] / "actions" / "azure-pipelines"


@pytest.fixture(scope="session")
def task_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of actions/azure-pipelines with mlopsci/node_modules installed by ``npm ci``."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("Node.js and npm are not installed")
    copy = tmp_path_factory.mktemp("azure-task") / "ext"
    shutil.copytree(TASK, copy, ignore=shutil.ignore_patterns("node_modules", "*.whl"))
    subprocess.run(
        ["npm", "ci", "--omit=dev", "--silent", "--no-audit", "--no-fund"],
        cwd=copy / "mlopsci",
        check=True,
        capture_output=True,
        timeout=300,
    )
    return copy
