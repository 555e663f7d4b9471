"""A minimal valid mlops.yaml, written to a folder, and the problems loading a text gives."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlops_ci.config.types import load_config
from mlops_ci.errors import ConfigError

VALID = """\
version: 1
model: {name: demo}
train:
  command: python train.py
evaluate:
  data: data/test.csv
  target: label
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "mlops.yaml"
    path.write_text(text)
    return path


def problems(tmp_path: Path, text: str) -> list[str]:
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, text))
    return err.value.problems
