"""A small classification project written by a test: its data, its training script and an
mlops.yaml (target ``label``, accuracy, a quick profile) beside a seeded MLflow store."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from tests.support.store import copy_example

CONFIG = """version: 1
model: {{name: {name}, flavor: sklearn, task: classification}}
train:
  command: "{{python}} train.py"
  inputs: [data/train.csv, train.py]
  params: {{{params}}}
  outputs: {{model: outputs/model.joblib, metrics: outputs/metrics.json}}
evaluate: {{data: data/test.csv, target: label, metrics: [accuracy]}}
gate:
  rules: [{{metric: accuracy, min: 0.5}}]
registry: {{tracking_uri: "sqlite:///.mlops/mlflow.db", production_alias: production}}
package:
  onnx: {onnx}
  profile: {{single_row_runs: 20, batch_sizes: [1, 64]}}
"""


def config_text(name: str, params: str = "", onnx: str = "auto") -> str:
    """The project's mlops.yaml; ``params``: train.params' flow-style body (``k: v, ...``)."""
    return CONFIG.format(name=name, params=params, onnx=onnx)


def classifier_project(
    dest: Path, name: str, train_py: str, train: pd.DataFrame, test: pd.DataFrame, params: str = ""
) -> Path:
    """The project at ``dest`` (a copy of the iris example for its seeded store, its data,
    training script and configuration replaced)."""
    root = copy_example(dest)
    train.to_csv(root / "data" / "train.csv", index=False)
    test.to_csv(root / "data" / "test.csv", index=False)
    (root / "train.py").write_text(train_py)
    (root / "mlops.yaml").write_text(config_text(name, params))
    return root
