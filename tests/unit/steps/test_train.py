"""train's checks before anything runs: the params it is given, its outputs."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlops_ci.config.types import load_config


def test_undeclared_param_is_refused_with_a_guess(project: Path) -> None:
    from mlops_ci.errors import InputError
    from mlops_ci.steps.train import check_overrides

    config = load_config(project)
    check_overrides(config, {"C": 0.5})
    with pytest.raises(InputError, match="--param c: not declared .*; did you mean 'C'\\?"):
        check_overrides(config, {"c": 0.5})
