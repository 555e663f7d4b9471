"""The typed settings of the example's mlops.yaml."""

from __future__ import annotations

from typing import Any


def test_example_config_loads(config: Any) -> None:
    assert config.model.name == "iris-classifier"
    assert config.gate.rules[0].must == "not_worse_than_production"
    assert config.gate.rules[0].tolerance == 0.005
