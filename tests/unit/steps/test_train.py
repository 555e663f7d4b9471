"""train's checks before anything runs: the params it is given, its outputs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from mlops_ci.config.types import load_config
from mlops_ci.errors import InputError


def test_undeclared_param_is_refused_with_a_guess(project: Path) -> None:
    from mlops_ci.errors import InputError
    from mlops_ci.steps.train import check_overrides

    config = load_config(project)
    check_overrides(config, {"C": 0.5})
    with pytest.raises(InputError, match="--param c: not declared .*; did you mean 'C'\\?"):
        check_overrides(config, {"c": 0.5})


def test_an_output_that_names_a_folder_is_refused_before_training(
    config: Any, fake_registry: Any
) -> None:
    from mlops_ci.steps.train import train

    config.resolve(config.train.model_output).mkdir(parents=True)
    with pytest.raises(InputError, match="train.outputs.model: .* is a folder"):
        train(config, fake_registry)
