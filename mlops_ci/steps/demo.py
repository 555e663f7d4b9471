"""pipeline: the steps in order on one project; `mlops-ci demo` runs it on the shipped example.

The demo trains, compares (no baseline), registers and promotes a first model, then trains a
changed one and lets the gate decide against production on the same evaluation data.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from mlops_ci.bundled import bundled
from mlops_ci.config.types import Config, Scalar, load_config
from mlops_ci.errors import GateFailed, MlopsError
from mlops_ci.evaluation.comparison import ComparisonResult
from mlops_ci.records import FOLDER, RegisterResult
from mlops_ci.registry import ModelRegistry, open_registry
from mlops_ci.steps.compare import compare
from mlops_ci.steps.promote import PromoteResult, promote
from mlops_ci.steps.register import register
from mlops_ci.steps.train import TrainResult, train

EXAMPLE = "iris"
# The demo's second training: a much stronger regularisation, which the gate should refuse.
DEMO_CHANGE: dict[str, Scalar] = {"C": 0.01}


@dataclass(frozen=True)
class Round:
    """One pass of train → compare → register; ``refused`` holds the gate's reason."""

    train: TrainResult
    comparison: ComparisonResult
    registered: RegisterResult | None
    refused: str | None


@dataclass(frozen=True)
class DemoResult:
    project: Path
    registry: str
    first: Round
    promoted: PromoteResult
    second: Round
    change: dict[str, Scalar]


def copy_example(dest: Path, name: str = EXAMPLE) -> Path:
    """Copy the example into ``dest`` (which must be empty or absent), without old state."""
    if dest.exists() and any(dest.iterdir()):
        raise MlopsError(f"--dir {dest}: folder is not empty", hint="give a new or empty folder")
    ignore = shutil.ignore_patterns(FOLDER, "outputs", "__pycache__", "mlruns")
    shutil.copytree(bundled(f"examples/{name}"), dest, ignore=ignore, dirs_exist_ok=True)
    return dest


def run_round(
    config: Config,
    registry: ModelRegistry,
    overrides: dict[str, Scalar] | None = None,
    force: bool = False,
) -> Round:
    """train → compare → register, where a gate refusal is an outcome, not an exception."""
    trained = train(config, registry, overrides=overrides)
    comparison = compare(config, registry, trained.run_id)
    try:
        registered = register(config, registry, trained.run_id, force=force)
    except GateFailed as refusal:
        return Round(trained, comparison, None, str(refusal))
    return Round(trained, comparison, registered, None)


def run_demo(dest: Path) -> DemoResult:
    project = copy_example(dest)
    config = load_config(project)
    # The demo always uses its own embedded registry, never a team server named in the env.
    registry = open_registry(config, honour_env=False)
    first = run_round(config, registry)
    if first.registered is None:
        raise MlopsError(f"demo: the first model was refused: {first.refused}")
    promoted = promote(
        config,
        registry,
        first.registered.version,
        by="mlops-ci demo",
        reason="first model of the demo (no baseline)",
    )
    second = run_round(config, registry, overrides=DEMO_CHANGE)
    return DemoResult(project, registry.describe(), first, promoted, second, dict(DEMO_CHANGE))
