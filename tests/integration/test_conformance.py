"""One model, one answer, over a zoo of ordinary scikit-learn (and XGBoost/LightGBM) models.

Each model is fitted here on generated data with numbers, text, awkward column names and
missing values (numbers and text), then taken through the real chain: `train` (recording it in
MLflow on SQLite), `compare`, `register`, `package` with the default ``package.onnx: auto``,
a real `mlops-ci serve` process (``/score`` records with nulls, v2 named JSON tensors; adaptive
batching on: each row also sent as its own request, one at a time and then all at once with
bad requests among them, the answers equal bit for bit for ONNX) and `batch-score` of the
evaluation CSV. Every answer is held against the native model scoring
the evaluation data as compare reads it: labels equal, probabilities/values within the
tolerance package checked. The table (model x path, format, max |diff|) is printed; run with
``pytest tests/integration/test_conformance.py -s`` to see it.
"""

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
from mlops_ci.registry.mlflow import MlflowRegistry
from mlops_ci.serve.model import read_spec
from mlops_ci.steps.batch_score import batch_score
from mlops_ci.steps.compare import compare
from mlops_ci.steps.package import package
from mlops_ci.steps.register import register
from mlops_ci.steps.train import train
from tests.support.batching import Request, batched_calls, post_all
from tests.support.serve_helpers import serving

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

NUMBERS = ["x1", "x 2", "a|b", "1st", "größe"]
TEXT = "colour"
FEATURES = [*NUMBERS, TEXT]
TRAIN_PY = """\
import json, os, shutil
os.makedirs("outputs", exist_ok=True)
shutil.copy("fitted.joblib", "outputs/model.joblib")
json.dump({"fitted": 1}, open("outputs/metrics.json", "w"))
"""


def dataset(task: str, rows: int, seed: int) -> pd.DataFrame:
    """Numbers on several scales, a text column, 10% of x1 and 12% of colour missing."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "x1": rng.normal(size=rows),
            "x 2": rng.normal(size=rows) * 10,
            "a|b": rng.uniform(-100, 100, rows),
            "1st": rng.integers(0, 5, rows).astype(float),
            "größe": rng.normal(size=rows),
            TEXT: rng.choice(["red", "green", "blue", "dark blue"], rows).astype(object),
        }
    )
    signal = frame["x1"].fillna(0) + frame["a|b"] / 50 + (frame[TEXT] == "red") * 1.5
    frame.loc[rng.random(rows) < 0.10, "x1"] = np.nan
    frame.loc[rng.random(rows) < 0.12, TEXT] = np.nan
    if task == "regression":
        frame["target"] = 150_000 + 40_000 * signal + rng.normal(size=rows) * 5_000
    else:
        frame["target"] = np.where(signal > 0.3, "yes", np.where(signal < -0.6, "no", "maybe"))
    return frame


def impute_encode(scale: bool = True) -> Any:
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    numbers = [SimpleImputer(strategy="median"), *([StandardScaler()] if scale else [])]
    return ColumnTransformer(
        [
            ("num", make_pipeline(*numbers), NUMBERS),
            (
                "txt",
                make_pipeline(
                    SimpleImputer(strategy="constant", fill_value="missing"),
                    OneHotEncoder(handle_unknown="ignore"),
                ),
                [TEXT],
            ),
        ]
    )


def ordinal_text() -> Any:
    """Text as ordinal codes (missing and unseen: -1), numbers passed with their NaNs."""
    from sklearn.compose import ColumnTransformer
    from sklearn.preprocessing import OrdinalEncoder

    return ColumnTransformer(
        [
            (
                "txt",
                OrdinalEncoder(
                    handle_unknown="use_encoded_value", unknown_value=-1, encoded_missing_value=-1
                ),
                [TEXT],
            )
        ],
        remainder="passthrough",
    )


def zoo() -> dict[str, tuple[str, Callable[[], Any]]]:
    """name -> (task, a function building the unfitted model)."""
    from lightgbm import LGBMClassifier, LGBMRegressor
    from sklearn import ensemble, linear_model, neural_network, svm
    from sklearn.pipeline import make_pipeline
    from xgboost import XGBClassifier, XGBRegressor

    def pipe(est: Any, scale: bool = True) -> Callable[[], Any]:
        return lambda: make_pipeline(impute_encode(scale), est)

    c, r = "classification", "regression"
    return {
        "LogisticRegression": (c, pipe(linear_model.LogisticRegression(max_iter=500))),
        "RandomForestClassifier": (
            c,
            pipe(ensemble.RandomForestClassifier(30, max_depth=6, random_state=0), False),
        ),
        "HistGradientBoostingClassifier (ColumnTransformer)": (
            c,
            pipe(ensemble.HistGradientBoostingClassifier(max_iter=30, random_state=0), False),
        ),
        "HistGradientBoostingClassifier (native categorical)": (
            c,
            lambda: make_pipeline(
                ordinal_text(),
                ensemble.HistGradientBoostingClassifier(
                    max_iter=30, categorical_features=[0], random_state=0
                ),
            ),
        ),
        "SVC(probability=True)": (c, pipe(svm.SVC(probability=True, random_state=0))),
        "MLPClassifier": (
            c,
            pipe(
                neural_network.MLPClassifier(hidden_layer_sizes=(16,), max_iter=300, random_state=0)
            ),
        ),
        "XGBClassifier (missing values, integer labels)": (
            c,
            lambda: make_pipeline(ordinal_text(), XGBClassifier(n_estimators=20, max_depth=3)),
        ),
        "LGBMClassifier (missing values)": (
            c,
            lambda: make_pipeline(
                ordinal_text(), LGBMClassifier(n_estimators=20, num_leaves=8, verbose=-1)
            ),
        ),
        "Ridge": (r, pipe(linear_model.Ridge())),
        "RandomForestRegressor": (
            r,
            pipe(ensemble.RandomForestRegressor(30, max_depth=6, random_state=0), False),
        ),
        "XGBRegressor (missing values)": (
            r,
            lambda: make_pipeline(ordinal_text(), XGBRegressor(n_estimators=20, max_depth=3)),
        ),
        "LGBMRegressor (missing values)": (
            r,
            lambda: make_pipeline(
                ordinal_text(), LGBMRegressor(n_estimators=20, num_leaves=8, verbose=-1)
            ),
        ),
    }


def project(tmp_path: Path, name: str, task: str, build: Callable[[], Any]) -> Path:
    """A project whose training command hands over the model fitted here."""
    root = tmp_path / "project"
    (root / "data").mkdir(parents=True)
    train_data, test_data = dataset(task, 400, 1), dataset(task, 120, 2)
    if "integer labels" in name:
        codes = {"no": 0, "maybe": 1, "yes": 2}
        train_data["target"] = train_data["target"].map(codes)
        test_data["target"] = test_data["target"].map(codes)
    model = build().fit(train_data[FEATURES], train_data["target"])
    joblib.dump(model, root / "fitted.joblib")
    train_data.to_csv(root / "data" / "train.csv", index=False)
    test_data.to_csv(root / "data" / "test.csv", index=False)
    (root / "train.py").write_text(TRAIN_PY)
    metric = "accuracy" if task == "classification" else "rmse"
    (root / "mlops.yaml").write_text(
        f"""version: 1
model: {{name: zoo-model, flavor: sklearn, task: {task}}}
train:
  command: "{{python}} train.py"
  inputs: [data/train.csv, train.py, fitted.joblib]
  outputs: {{model: outputs/model.joblib, metrics: outputs/metrics.json}}
evaluate:
  {{data: data/test.csv, target: target, metrics: [{metric}], importance: {{enabled: false}}}}
registry: {{tracking_uri: "sqlite:///.mlops/mlflow.db"}}
package:
  profile: {{single_row_runs: 10, batch_sizes: [1, 32]}}
"""
    )
    return root


def native_answers(model: Any, frame: pd.DataFrame) -> tuple[list[str] | None, np.ndarray]:
    if hasattr(model, "predict_proba"):
        return [str(v) for v in model.predict(frame)], np.asarray(model.predict_proba(frame))
    return None, np.asarray(model.predict(frame), np.float64).reshape(-1, 1)


def json_rows(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Records with null for every missing value, as a client sends them."""
    return [
        {k: (None if pd.isna(v) else v) for k, v in row.items()}
        for row in frame.astype(object).to_dict("records")
    ]


def v2_body(frame: pd.DataFrame) -> dict[str, Any]:
    tensors = []
    for name in frame.columns:
        values = [None if pd.isna(v) else v for v in frame[name].astype(object)]
        kind = "BYTES" if name == TEXT else "FP64"
        tensors.append({"name": name, "shape": [len(frame), 1], "datatype": kind, "data": values})
    return {"inputs": tensors}


def gap(
    labels: list[str] | None,
    scores: np.ndarray,
    want_labels: list[str] | None,
    want: np.ndarray,
    atol: float,
    rtol: float,
) -> tuple[int, float]:
    """(rows whose label differs or whose scores are beyond atol + rtol*|native|, max |diff|)."""
    scores = np.asarray(scores, np.float64).reshape(want.shape)
    diff = np.abs(scores - want)
    bad = (diff > atol + rtol * np.abs(want)).any(axis=1)
    if want_labels is not None:
        assert labels is not None
        bad |= np.array([str(a) != str(b) for a, b in zip(labels, want_labels, strict=True)])
    return int(bad.sum()), float(diff.max())


def batched_gap(
    url: str, features: pd.DataFrame, fmt: str, tol: Any, log: Callable[[], str]
) -> tuple[int, float]:
    """Every row its own request, with a bad request (text in a number column) every 7th:
    sent one at a time (each scored alone, as with batching off) and all at once (stacked
    into shared model calls). (rows whose answers differ, max |diff|): ONNX bit for bit
    (the status and the JSON body equal), a native model within the parity tolerance."""
    bodies: list[Request] = []
    for i, record in enumerate(json_rows(features)):
        body = {"inputs": [{**record, "x 2": "ten"} if i % 7 == 3 else record]}
        bodies.append(("/score", body, {}))
    alone = post_all(url, bodies, at_once=False)
    calls, rows = batched_calls(url, "1")
    together = post_all(url, bodies, at_once=True)
    calls, rows = (a - b for a, b in zip(batched_calls(url, "1"), (calls, rows), strict=True))
    if "served unbatched" not in log():
        assert calls and rows / calls > 1.5, f"no batches formed: {calls} calls, {rows} rows"
    differ, worst = 0, 0.0
    for i, ((status, body, _), (status2, body2, _)) in enumerate(zip(alone, together, strict=True)):
        assert status == status2 == (422 if i % 7 == 3 else 200), (i, body, body2)
        if status != 200 or fmt == "onnx":
            differ += body != body2
            continue
        a = np.asarray(body.get("probabilities", body["predictions"]), np.float64)
        b = np.asarray(body2.get("probabilities", body2["predictions"]), np.float64)
        worst = max(worst, float(np.abs(a - b).max()))
        far = (np.abs(a - b) > tol.atol + tol.rtol * np.abs(a)).any()
        differ += bool(far) or body["predictions"] != body2["predictions"]
    return differ, worst


TABLE: list[str] = []
CASES = zoo()


@pytest.mark.parametrize("name", list(CASES))
def test_every_path_answers_like_the_native_model(name: str, tmp_path: Path) -> None:
    task, build = CASES[name]
    root = project(tmp_path, name, task, build)
    config = load_config(root)
    reg = MlflowRegistry.for_config(config)
    run = train(config, reg)
    compare(config, reg, run.run_id)
    packaged = package(config, reg, register(config, reg, run.run_id).version, build=False)
    assert packaged.served_parity is not None and packaged.served_parity.passed
    if packaged.format == "sklearn":  # auto fell back: it says why, on the version too
        assert packaged.note and packaged.note.startswith("ONNX: not used — ")
        tags = reg.get_version("zoo-model", "1").tags
        assert tags["mlops.package.note"] == packaged.note
    spec = read_spec(Path(packaged.context))
    assert spec.features == tuple(FEATURES)
    assert {"x1", TEXT} <= set(spec.schema.nullable)  # the evaluation data has gaps there

    native = joblib.load(root / "fitted.joblib")
    frame = pd.read_csv(root / "data" / "test.csv", keep_default_na=False, na_values=[""])
    features = frame[FEATURES]
    want_labels, want = native_answers(native, features)
    tol = packaged.served_parity.tolerance
    results: dict[str, tuple[int, float]] = {}

    with serving("--model-dir", packaged.context, "--max-batch-size", "16", cwd=root) as srv:
        answer = httpx.post(f"{srv.url}/score", json={"inputs": json_rows(features)}, timeout=30)
        assert answer.status_code == 200, answer.text + srv.log()[-3000:]
        body = answer.json()
        scores = body.get("probabilities", body["predictions"])
        labels = body["predictions"] if want_labels is not None else None
        results["/score"] = gap(labels, np.asarray(scores), want_labels, want, tol.atol, tol.rtol)

        infer = httpx.post(
            f"{srv.url}/v2/models/zoo-model/infer", json=v2_body(features), timeout=30
        )
        assert infer.status_code == 200, infer.text
        outputs = {o["name"]: o["data"] for o in infer.json()["outputs"]}
        v2_scores = np.asarray(outputs.get("probabilities", outputs.get("variable")))
        v2_labels = [str(v) for v in outputs["label"]] if want_labels is not None else None
        results["v2"] = gap(v2_labels, v2_scores, want_labels, want, tol.atol, tol.rtol)

        results["batched"] = batched_gap(srv.url, features, packaged.format, tol, srv.log)

        # A missing value where the evaluation data has none is refused alike on every path.
        holed = json_rows(features.head(1))
        holed[0]["a|b"] = None
        refused = httpx.post(f"{srv.url}/score", json={"inputs": holed}, timeout=30)
        if "a|b" not in spec.schema.nullable:
            assert refused.status_code == 422, refused.text
    assert "Traceback" not in srv.log()

    out = tmp_path / "scored.parquet"
    result = batch_score(spec, root / "data" / "test.csv", out, processes=1)
    assert result.rejected == 0 and result.scored == len(frame)
    scored = pd.read_parquet(out)
    if want_labels is not None:
        # batch-score writes the label and its probability (that label's column, which is
        # not the row's largest where predict is not the arg-max: SVC's, a threshold's)
        batch_labels = [str(v) for v in scored["prediction"]]
        column = [list(map(str, native.classes_)).index(label) for label in want_labels]
        top = want[np.arange(len(want)), column].reshape(-1, 1)
        results["batch-score"] = gap(
            batch_labels,
            scored["probability"].to_numpy().reshape(-1, 1),
            want_labels,
            top,
            tol.atol,
            tol.rtol,
        )
    else:
        values = scored["prediction"].to_numpy().reshape(-1, 1)
        results["batch-score"] = gap(None, values, None, want, tol.atol, tol.rtol)

    line = f"| {name} | {packaged.format} | " + " | ".join(
        f"{rows} rows, {diff:.2g}" for rows, diff in results.values()
    )
    TABLE.append(line + " |")
    print("\n" + line)
    for path, (rows, diff) in results.items():
        assert rows == 0, f"{name}: {path} differs from the native model on {rows} rows ({diff})"
