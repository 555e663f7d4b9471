"""Two heavier models beside the demo's, trained, registered and packaged as the demo is (the
real train → compare → register → package chain on a small generated project), so that
`mlops-ci serve --model-dir` and the bare app serve the same ONNX graph:

- ``mlp``: 256 inputs, two hidden layers of 2,048 (ReLU), a 3-class head: the model call
  dominates the request (scikit-learn's MLPClassifier fitted for two epochs; it need not be
  accurate, only cost what such a network costs);
- ``forest``: a 300-tree random forest on 20 features (onnxruntime's tree ensemble: a cost per
  row that hardly falls with the batch size, so batching can win little there).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

# (features, rows generated) of each model; its estimator is built in the training script.
SHAPES = {"mlp": (256, 600), "forest": (20, 3000)}

_TRAIN = '''"""Fit the benchmark's {kind} on generated rows; mlops-ci packages it as ONNX."""
import json
from pathlib import Path

import joblib
import pandas as pd
from sklearn.ensemble import RandomForestClassifier
from sklearn.neural_network import MLPClassifier

train = pd.read_csv("data/train.csv")
X, y = train.drop(columns=["label"]), train["label"]
if "{kind}" == "mlp":
    model = MLPClassifier(hidden_layer_sizes=(2048, 2048), max_iter=2, random_state=0)
else:
    model = RandomForestClassifier(n_estimators=300, max_depth=12, random_state=0, n_jobs=1)
model.fit(X, y)
Path("outputs").mkdir(exist_ok=True)
joblib.dump(model, "outputs/model.joblib")
Path("outputs/metrics.json").write_text(json.dumps({{"train_accuracy": model.score(X, y)}}))
'''

_CONFIG = """version: 1
model: {{name: bench-{kind}, flavor: sklearn, task: classification}}
train:
  command: "{{python}} train.py"
  inputs: [data/train.csv, train.py]
  outputs: {{model: outputs/model.joblib, metrics: outputs/metrics.json}}
evaluate: {{data: data/test.csv, target: label, metrics: [accuracy]}}
gate:
  rules:
    - {{metric: accuracy, min: 0.0}}
registry: {{tracking_uri: "sqlite:///.mlops/mlflow.db"}}
package:
  onnx: true
  parity_tolerance: 1.0e-3
  profile: {{single_row_runs: 20, batch_sizes: [1]}}
"""


def project(folder: Path, kind: str) -> Path:
    """A project whose training command fits ``kind`` on generated rows (3 classes)."""
    features, rows = SHAPES[kind]
    rng = np.random.default_rng(0)
    centers = rng.normal(0, 1, (3, features))
    y = rng.integers(0, 3, rows)
    x = centers[y] + rng.normal(0, 1.5, (rows, features))
    names = [f"f{i}" for i in range(features)]
    (folder / "data").mkdir(parents=True)
    lines = [",".join([*names, "label"])]
    for values, label in zip(x, y, strict=True):
        lines.append(",".join([*(f"{v:.5f}" for v in values), f"c{label}"]))
    cut = rows * 4 // 5
    (folder / "data" / "train.csv").write_text("\n".join(lines[: cut + 1]) + "\n")
    (folder / "data" / "test.csv").write_text("\n".join([lines[0], *lines[cut + 1 :]]) + "\n")
    (folder / "train.py").write_text(_TRAIN.format(kind=kind))
    (folder / "mlops.yaml").write_text(_CONFIG.format(kind=kind))
    return folder


def packaged_model(work: Path, kind: str) -> Path:
    """The package folder (``model/`` of the build context) of ``kind`` ("mlp" or "forest"),
    trained, registered and packaged under ``work/kind`` on its own SQLite registry."""
    from mlops_ci.config.types import load_config
    from mlops_ci.registry.mlflow import MlflowRegistry
    from mlops_ci.steps.compare import compare
    from mlops_ci.steps.package import package
    from mlops_ci.steps.register import register
    from mlops_ci.steps.train import train

    os.environ.pop("MLFLOW_TRACKING_URI", None)
    config = load_config(project(work / kind, kind))
    reg = MlflowRegistry.for_config(config)
    run = train(config, reg)
    compare(config, reg, run.run_id)
    version = register(config, reg, run.run_id, force=True)
    return Path(package(config, reg, version.version, build=False).context) / "model"


def one_row(kind: str) -> list[float]:
    """A row of ``kind``'s features, drawn like its training rows."""
    features = SHAPES[kind][0]
    return [round(float(v), 4) for v in np.random.default_rng(1).normal(0, 1.5, features)]
