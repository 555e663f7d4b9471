"""Bool and category columns, one answer on every path: LightGBM and HistGradientBoosting fitted
on a pandas ``category`` column and a ``bool`` column (native categoricals), written to CSV as
pandas writes it (True/False, the categories' text), taken through `train`, `compare`,
`register`, `package` (ONNX refused: the native model is served), a real `mlops-ci serve`
(``/score`` records with JSON true/false, v2 named tensors with BOOL and BYTES) and
`batch-score` of the CSV. Every answer is held against the fitted model's own answers on the
same rows with the dtypes it was fitted with; a value a kind does not take is refused alike,
naming the column."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import joblib
import numpy as np
import pandas as pd
import pytest

from mlops_ci.config.types import load_config
from mlops_ci.evaluation.data import load_evaluation
from mlops_ci.model.features import model_frame
from mlops_ci.packaging import convert
from mlops_ci.registry.mlflow import MlflowRegistry
from mlops_ci.runner import ModelRunner
from mlops_ci.serve.model import read_spec
from mlops_ci.steps.batch_score import batch_score
from mlops_ci.steps.compare import compare
from mlops_ci.steps.package import package
from mlops_ci.steps.register import register
from mlops_ci.steps.train import train
from tests.support.serve_helpers import serving

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

FEATURES = ["x", "colour", "flag", "size"]
COLOURS = ["red", "green", "blue", "dark blue"]  # the model's order, not sorted
TRAIN_PY = """\
import json, os, shutil
os.makedirs("outputs", exist_ok=True)
shutil.copy("fitted.joblib", "outputs/model.joblib")
json.dump({"fitted": 1}, open("outputs/metrics.json", "w"))
"""


def dataset(rows: int, seed: int) -> pd.DataFrame:
    """A number, a category column of text (its categories in COLOURS' order), a bool column
    and a category column of whole numbers."""
    rng = np.random.default_rng(seed)
    colour = rng.choice(COLOURS, rows)
    frame = pd.DataFrame(
        {
            "x": rng.normal(size=rows),
            "colour": pd.Categorical(colour, categories=COLOURS),
            "flag": rng.random(rows) < 0.4,
            "size": pd.Categorical(rng.choice([3, 1, 2], rows), categories=[3, 1, 2]),
        }
    )
    signal = frame["x"] + np.where(colour == "red", 1.2, 0) - np.where(frame["flag"], 0.9, 0)
    signal += np.where(frame["size"] == 2, 0.8, 0)
    frame["target"] = np.where(signal + rng.normal(size=rows) * 0.3 > 0, "yes", "no")
    return frame


def models() -> dict[str, Callable[[], Any]]:
    from lightgbm import LGBMClassifier
    from sklearn.ensemble import HistGradientBoostingClassifier

    return {
        "LGBMClassifier": lambda: LGBMClassifier(n_estimators=30, num_leaves=8, verbose=-1),
        "HistGradientBoostingClassifier(from_dtype)": lambda: HistGradientBoostingClassifier(
            max_iter=30, categorical_features="from_dtype", random_state=0
        ),
    }


def project(tmp_path: Path, build: Callable[[], Any]) -> tuple[Path, Any, pd.DataFrame]:
    """A project whose training command hands over the model fitted here on ``category`` and
    ``bool`` dtypes; its evaluation CSV as pandas writes the frame."""
    root = tmp_path / "project"
    (root / "data").mkdir(parents=True)
    train_data, test_data = dataset(300, 1), dataset(120, 2)
    model = build().fit(train_data[FEATURES], train_data["target"])
    joblib.dump(model, root / "fitted.joblib")
    train_data.to_csv(root / "data" / "train.csv", index=False)
    test_data.to_csv(root / "data" / "test.csv", index=False)
    (root / "train.py").write_text(TRAIN_PY)
    (root / "mlops.yaml").write_text(
        """version: 1
model: {name: kinds-model, flavor: sklearn, task: classification}
train:
  command: "{python} train.py"
  inputs: [data/train.csv, train.py, fitted.joblib]
  outputs: {model: outputs/model.joblib, metrics: outputs/metrics.json}
evaluate: {data: data/test.csv, target: target, metrics: [accuracy]}
registry: {tracking_uri: "sqlite:///.mlops/mlflow.db"}
package:
  profile: {single_row_runs: 10, batch_sizes: [1, 32]}
"""
    )
    return root, model, test_data


def gap(labels: list[str], scores: Any, want_labels: list[str], want: np.ndarray) -> float:
    """max |score - the model's own|, after checking every label is the model's."""
    assert [str(v) for v in labels] == want_labels
    return float(np.abs(np.asarray(scores, np.float64).reshape(want.shape) - want).max())


@pytest.mark.parametrize("name", list(models()))
def test_bool_and_category_columns_answer_like_the_fitted_model_on_every_path(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    root, model, test_data = project(tmp_path, models()[name])
    rows = test_data[FEATURES]
    want_labels = [str(v) for v in model.predict(rows)]
    want = np.asarray(model.predict_proba(rows))

    config = load_config(root)
    reg = MlflowRegistry.for_config(config)
    run = train(config, reg)
    compared = compare(config, reg, run.run_id)
    accuracy = float(np.mean(np.array(want_labels) == test_data["target"].to_numpy()))
    assert compared.candidate.metrics["accuracy"] == pytest.approx(accuracy)

    # compare's evaluation path: evaluate.data as it reads it, the model in the runner
    data = load_evaluation(config)
    with ModelRunner(config.train.isolation) as runner:
        remote = runner.load(root / "outputs" / "model.joblib")
        assert {remote.model_dtypes.get(c) for c in ("colour", "size")} == {"category"}
        if "LGBM" in type(model).__name__:  # LightGBM keeps its categories, in its order
            assert remote.model_categories["colour"] == COLOURS
        said = convert.native_outputs(remote, model_frame(remote, data.features, data.path))
    assert said.labels is not None
    assert gap(list(said.labels), said.scores, want_labels, want) < 1e-12

    packaged = package(config, reg, register(config, reg, run.run_id).version, build=False)
    assert packaged.format == "sklearn" and packaged.note  # ONNX refused: said in one line
    assert packaged.served_parity is not None and packaged.served_parity.passed
    spec = read_spec(Path(packaged.context))
    assert dict(zip(spec.features, spec.kinds, strict=True)) == {
        "x": "number",
        "colour": "category",
        "flag": "bool",
        "size": "category",
    }

    records = [
        {"x": float(r.x), "colour": str(r.colour), "flag": bool(r.flag), "size": int(r.size)}
        for r in rows.itertuples()
    ]
    v2 = {
        "inputs": [
            {"name": "x", "shape": [len(rows), 1], "datatype": "FP64", "data": list(rows.x)},
            {"name": "colour", "shape": [len(rows), 1], "datatype": "BYTES",
             "data": [str(c) for c in rows.colour]},
            {"name": "flag", "shape": [len(rows), 1], "datatype": "BOOL",
             "data": [bool(f) for f in rows.flag]},
            {"name": "size", "shape": [len(rows)], "datatype": "INT64",
             "data": [int(v) for v in rows["size"]]},
        ]
    }  # fmt: skip
    with serving("--model-dir", packaged.context, cwd=root) as srv:
        answer = httpx.post(f"{srv.url}/score", json={"inputs": records}, timeout=30)
        assert answer.status_code == 200, answer.text + srv.log()[-3000:]
        body = answer.json()
        assert gap(body["predictions"], body["probabilities"], want_labels, want) < 1e-12

        infer = httpx.post(f"{srv.url}/v2/models/kinds-model/infer", json=v2, timeout=30)
        assert infer.status_code == 200, infer.text
        outputs = {o["name"]: o["data"] for o in infer.json()["outputs"]}
        assert gap(outputs["label"], outputs["probabilities"], want_labels, want) < 1e-6  # FP32

        # a value the kind does not take: a 422 naming the column, never a 5xx
        bad = [{**records[0], "flag": "maybe"}]
        refused = httpx.post(f"{srv.url}/score", json={"inputs": bad}, timeout=30)
        assert refused.status_code == 422, refused.text
        assert "flag" in refused.json()["error"] and "true or false" in refused.json()["error"]
        # a whole-number category sent as text is cast to the categories' type
        texts = [{**r, "size": str(r["size"])} for r in records]
        answer = httpx.post(f"{srv.url}/score", json={"inputs": texts}, timeout=30)
        assert answer.status_code == 200, answer.text
        assert gap(answer.json()["predictions"], answer.json()["probabilities"],
                   want_labels, want) < 1e-12  # fmt: skip
        unseen = [{**records[0], "colour": "purple"}]  # scored as the model scores it itself
        alone = pd.DataFrame([{**records[0], "colour": np.nan}]).astype(
            {"colour": pd.CategoricalDtype(COLOURS), "size": rows["size"].dtype}
        )
        answer = httpx.post(f"{srv.url}/score", json={"inputs": unseen}, timeout=30)
        assert answer.status_code == 200, answer.text
        own = model.predict_proba(alone[FEATURES])
        assert np.abs(np.asarray(answer.json()["probabilities"]) - own).max() < 1e-12
    assert "Traceback" not in srv.log()

    out = tmp_path / "scored.parquet"
    result = batch_score(spec, root / "data" / "test.csv", out, processes=1)
    assert result.rejected == 0 and result.scored == len(rows)
    scored = pd.read_parquet(out)
    assert [str(v) for v in scored["prediction"]] == want_labels
    chosen = want[np.arange(len(want)), [list(model.classes_).index(v) for v in want_labels]]
    assert np.abs(scored["probability"].to_numpy() - chosen).max() < 1e-12
