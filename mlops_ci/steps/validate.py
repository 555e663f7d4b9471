"""validate: mlops.yaml checked against its schema and its meaning, every problem at its line.

Beyond the schema (which loading the file already checks): the pipeline's stages (deps, outs,
cycles, params); the paths read before anything runs (evaluate.data, unless a stage writes it,
and train.inputs) exist; and, when evaluate.data exists, its target and feature columns.
"""

from __future__ import annotations

from mlops_ci.config.paths import missing_paths
from mlops_ci.config.types import Config
from mlops_ci.errors import ConfigError
from mlops_ci.evaluation.data import check_columns
from mlops_ci.pipeline.run import load_pipeline


def validate(config: Config) -> None:
    """Raise ConfigError (exit 2) naming the file and each problem; return when all is well."""
    pipeline = load_pipeline(config)  # the stages: deps, outs, cycles, params (with lines)
    problems = missing_paths(
        config, lambda path: pipeline is not None and pipeline.producer(path) is not None
    )
    problems += check_columns(config)
    if problems:
        raise ConfigError(problems, file=config.path)
