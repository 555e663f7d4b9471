"""The iris example trained, registered and packaged in a folder: what the benchmarks score."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any


def packaged_example(work: Path, params: dict[str, Any] | None = None) -> tuple[Path, Any, Any]:
    """(package folder, the MLflow registry, the version record) of the example under ``work``,
    on its own SQLite registry, with a short profile."""
    from mlops_ci.config.types import load_config
    from mlops_ci.registry.mlflow import MlflowRegistry
    from mlops_ci.steps.compare import compare
    from mlops_ci.steps.demo import copy_example
    from mlops_ci.steps.package import package
    from mlops_ci.steps.register import register
    from mlops_ci.steps.train import train

    os.environ.pop("MLFLOW_TRACKING_URI", None)
    project = copy_example(work / "iris")
    cfg = project / "mlops.yaml"
    cfg.write_text(cfg.read_text() + "  profile: {single_row_runs: 20, batch_sizes: [1]}\n")
    config = load_config(project)
    reg = MlflowRegistry.for_config(config)
    run = train(config, reg, overrides=params or {})
    compare(config, reg, run.run_id)
    version = register(config, reg, run.run_id, force=True)
    result = package(config, reg, version.version, build=False)
    return Path(result.context) / "model", reg, reg.get_version(config.model.name, version.version)
