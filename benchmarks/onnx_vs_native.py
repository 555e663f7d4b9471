"""ONNX (onnxruntime) vs the native model, for every example under examples/, in one run.

Each example's own train.py trains its model (iris: logistic regression and a 50-tree forest;
breast-cancer: a ColumnTransformer pipeline with a text column; diabetes: Ridge regression;
xgboost: an XGBoost pipeline; lightgbm: LightGBM regression; onnx: an exported softmax model);
the model is loaded as mlops-ci loads it, converted as `package` converts it, and both are
timed on rows of the example's evaluation data: one row, then batches.

Native is the model's own predict_proba (predict for regressors) on a DataFrame; for the onnx
flavor it is the exported graph as the training script wrote it, on onnxruntime with the same
options and arrays, so its ratio shows what the outputs mlops-ci adds cost (a label per row,
text when the model names its classes). Targets (issue 4): ONNX single-row >= 10x faster and
batch >= 2x faster, for the models mlops-ci converts.

Run: python benchmarks/onnx_vs_native.py [INTRA_OP_THREADS]   (0, the default, = all cores)
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mlops_ci.config.types import load_config
from mlops_ci.model.features import FeatureSchema, model_frame
from mlops_ci.model.files import load_model_file
from mlops_ci.model.onnxmodel import OnnxModel
from mlops_ci.packaging import convert, sessions

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
CASES = (  # (example, params for its train.py, label)
    ("iris", {}, "iris logistic (sklearn)"),
    ("iris", {"model": "forest", "n_estimators": 50}, "iris forest 50 (sklearn)"),
    ("breast-cancer", {}, "pipeline + text column (sklearn)"),
    ("diabetes", {}, "diabetes ridge (sklearn, regression)"),
    ("xgboost", {}, "xgboost pipeline"),
    ("lightgbm", {}, "lightgbm regression"),
    ("onnx", {}, "exported ONNX (onnx)"),
)
SINGLE_RUNS = 2000
BATCHES = (100, 1_000, 10_000)
THREADS = int(sys.argv[1]) if len(sys.argv) > 1 else 0


def median_ms(fn: Callable[[], Any], runs: int) -> float:
    for _ in range(min(20, runs)):
        fn()
    times = []
    for _ in range(runs):
        start = time.perf_counter_ns()
        fn()
        times.append((time.perf_counter_ns() - start) / 1e6)
    return statistics.median(times)


def trained(example: str, params: dict[str, Any], work: Path) -> tuple[Any, pd.DataFrame]:
    """The example's model, trained by its own train.py, and its evaluation features."""
    import json
    import os

    project = work / f"{example}-{len(list(work.iterdir()))}"
    shutil.copytree(EXAMPLES / example, project, ignore=shutil.ignore_patterns(".mlops", "outputs"))
    config = load_config(project)
    env = {**os.environ, "MLOPS_PARAMS": json.dumps({**config.train.params, **params})}
    subprocess.run([sys.executable, "train.py"], cwd=project, env=env, check=True)
    model = load_model_file(config.resolve(config.train.model_output), config.model.task)
    data = pd.read_csv(config.resolve(config.evaluate.data), keep_default_na=False, na_values=[""])
    features = model_frame(model, data.drop(columns=[config.evaluate.target]), "evaluate.data")
    return model, features


def main() -> None:
    warnings.simplefilter("ignore")
    print(f"onnxruntime intra-op threads: {THREADS or 'all cores'}; medians; ratio = native / onnx")
    summary = []
    with tempfile.TemporaryDirectory(prefix="onnx-vs-native-") as tmp:
        for example, params, label in CASES:
            model, features = trained(example, params, Path(tmp))
            converted = convert.convert_sklearn(model, features, None)
            sess = sessions.session(converted.onnx, THREADS, "all")
            schema = FeatureSchema.of_frame(features)
            native_fn = model.predict_proba if convert.is_classifier(model) else model.predict
            exported = (
                sessions.session(model.data, THREADS, "all")
                if isinstance(model, OnnxModel)
                else None
            )
            ratios = []
            for rows in (1, *BATCHES):
                frame = features.iloc[np.arange(rows) % len(features)].reset_index(drop=True)
                feeds = convert.frame_feeds(converted.layout, schema, frame)
                runs = SINGLE_RUNS if rows == 1 else max(20, 20_000 // rows)
                if exported is not None:  # the graph as exported, fed the same arrays
                    own = {exported.get_inputs()[0].name: next(iter(feeds.values()))}
                    native = median_ms(lambda e=exported, d=own: e.run(None, d), runs)
                else:
                    native = median_ms(lambda n=native_fn, f=frame: n(f), runs)
                onnx = median_ms(lambda s=sess, d=feeds: s.run(None, d), runs)
                ratios.append(native / onnx)
                print(
                    f"  {label:<36} {rows:>6} rows  native {native:8.3f} ms  "
                    f"onnx {onnx:8.3f} ms  {native / onnx:6.1f}x"
                )
            summary.append((label, ratios, isinstance(model, OnnxModel)))
    print("\n| model | single row | 100 rows | 1,000 rows | 10,000 rows | targets |")
    print("|---|---:|---:|---:|---:|---|")
    for label, ratios, already_onnx in summary:
        met = ratios[0] >= 10 and min(ratios[1:]) >= 2
        verdict = "n/a (already ONNX)" if already_onnx else ("met" if met else "MISSED")
        cells = " | ".join(f"{r:.1f}x" for r in ratios)
        print(f"| {label} | {cells} | {verdict} |")


if __name__ == "__main__":
    main()
