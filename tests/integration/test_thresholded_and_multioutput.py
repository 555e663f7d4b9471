"""A classifier's answers are its own: a FixedThresholdClassifier(threshold=0.3) trained,
packaged (its ONNX conversion refused: the graph would label by the arg-max), batch-scored
and served answers the labels of its ``predict`` and, for each row, the probability of that
label (not the row's largest). A model predicting several outputs per row is refused in one
line, exit 2, by train and by every verb it reaches (real MLflow SQLite store, real
`mlops-ci serve`)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import httpx
import joblib
import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from mlops_ci.config.types import load_config
from mlops_ci.registry import TAG_MODEL_URI
from mlops_ci.registry.mlflow import MlflowRegistry
from mlops_ci.serve.model import read_spec
from mlops_ci.steps.batch_score import batch_score
from mlops_ci.steps.package import PackageResult, package
from mlops_ci.steps.register import register
from mlops_ci.steps.train import train
from tests.support.classifier_project import classifier_project
from tests.support.helpers import run_cli
from tests.support.serve_helpers import serving

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

FEATURES = ["x1", "x2", "x3"]
TRAIN = """
import json, os
from pathlib import Path

import joblib
import pandas as pd
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.model_selection import FixedThresholdClassifier
from sklearn.multioutput import MultiOutputClassifier

kind = json.loads(os.environ.get("MLOPS_PARAMS", "{}")).get("kind", "threshold")
data = pd.read_csv("data/train.csv")
X, y = data[["x1", "x2", "x3"]], data["label"]
if kind == "threshold":
    model = FixedThresholdClassifier(LogisticRegression(), threshold=0.3).fit(X, y)
elif kind == "multi_classifier":
    both = pd.DataFrame({"label": y, "other": (data["x2"] > 0).map({True: "up", False: "down"})})
    model = MultiOutputClassifier(LogisticRegression()).fit(X, both)
else:  # two values per row from a plain regressor: nothing in it says so before it answers
    model = LinearRegression().fit(X, pd.DataFrame({"a": data["x1"], "b": data["x2"]}))
Path("outputs").mkdir(exist_ok=True)
joblib.dump(model, "outputs/model.joblib")
Path("outputs/metrics.json").write_text("{}")
"""


def rows(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3))
    score = x[:, 0] + 0.5 * x[:, 1] + rng.normal(scale=0.8, size=n)
    frame = pd.DataFrame(x, columns=FEATURES).round(4)
    frame["label"] = np.where(score > 0.6, "yes", "no")
    return frame


def project(tmp_path: Path) -> Path:
    return classifier_project(
        tmp_path / "answers", "answers", TRAIN, rows(300, 0), rows(200, 1), "kind: threshold"
    )


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return project(tmp_path)


@dataclass(frozen=True)
class Thresholded:
    root: Path
    packaged: PackageResult
    test: pd.DataFrame
    labels: list[str]  # the fitted model's own predict
    proba: np.ndarray  # its predict_proba
    chosen: np.ndarray  # each row's predicted label's probability
    moved: np.ndarray  # rows whose label is not their most probable class


@pytest.fixture(scope="module")
def thresholded(tmp_path_factory: pytest.TempPathFactory) -> Thresholded:
    """FixedThresholdClassifier(LogisticRegression(), threshold=0.3), trained, registered and
    packaged once (package.onnx: auto, the default)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        root = project(tmp_path_factory.mktemp("thresholded"))
        config = load_config(root)
        reg = MlflowRegistry.for_config(config)
        run = train(config, reg)
        version = register(config, reg, run.run_id, force=True).version
        packaged = package(config, reg, version, build=False)
    model = joblib.load(root / "outputs" / "model.joblib")
    test = pd.read_csv(root / "data" / "test.csv")
    labels = model.predict(test[FEATURES])
    proba = model.predict_proba(test[FEATURES])
    chosen = proba[np.arange(len(labels)), np.searchsorted(model.classes_, labels)]
    moved = labels != model.classes_[proba.argmax(axis=1)]
    return Thresholded(root, packaged, test, [str(v) for v in labels], proba, chosen, moved)


def test_a_thresholded_classifier_is_packaged_native_saying_why(thresholded: Thresholded) -> None:
    packaged, root = thresholded.packaged, thresholded.root
    # skl2onnx would label by the arg-max: the conversion is refused, the native model served
    assert packaged.format == "sklearn", packaged.note
    assert packaged.note is not None and "FixedThresholdClassifier" in packaged.note
    assert "threshold (0.3)" in packaged.note
    assert packaged.served_parity is not None and packaged.served_parity.differing_rows == 0
    record = json.loads((root / ".mlops" / "package.json").read_text())  # what report reads
    assert record["note"] == packaged.note
    reg = MlflowRegistry.for_config(load_config(root))
    tags = reg.get_version("answers", packaged.version).tags
    assert tags["mlops.package.note"] == packaged.note
    assert thresholded.moved.sum() >= 10  # the threshold decides these rows, not the arg-max


def test_batch_score_writes_the_models_labels_and_their_probabilities(
    thresholded: Thresholded, tmp_path: Path
) -> None:
    out = tmp_path / "scored.parquet"
    spec = read_spec(Path(thresholded.packaged.context))
    source = thresholded.root / "data" / "test.csv"
    done = batch_score(spec, source, out, processes=1)
    assert done.scored == len(thresholded.test) and done.rejected == 0
    scored = pd.read_parquet(out)
    assert [str(v) for v in scored["prediction"]] == thresholded.labels
    assert np.allclose(scored["probability"], thresholded.chosen, rtol=0, atol=1e-12)
    moved = thresholded.moved
    assert not np.allclose(scored["probability"][moved], thresholded.proba.max(axis=1)[moved])


def test_serve_answers_the_models_labels_and_probabilities(thresholded: Thresholded) -> None:
    head = thresholded.test[FEATURES].head(40)
    labels = thresholded.labels[:40]
    with serving("--model-dir", thresholded.packaged.context, cwd=thresholded.root) as srv:
        answer = httpx.post(f"{srv.url}/score", json={"inputs": head.to_dict("records")})
        assert answer.status_code == 200, answer.text
        said = answer.json()
        assert said["predictions"] == labels and said["classes"] == ["no", "yes"]
        assert np.allclose(said["probabilities"], thresholded.proba[:40], rtol=0, atol=1e-12)
        v2 = {
            "inputs": [
                {"name": c, "shape": [40, 1], "datatype": "FP64", "data": head[c].tolist()}
                for c in FEATURES
            ]
        }
        infer = httpx.post(f"{srv.url}/v2/models/answers/infer", json=v2, timeout=30)
        assert infer.status_code == 200, infer.text
        outputs = {o["name"]: o["data"] for o in infer.json()["outputs"]}
        assert [str(v) for v in outputs["label"]] == labels
    assert "Traceback" not in srv.log()


@pytest.mark.parametrize(
    ("kind", "said"),
    [
        ("multi_classifier", "outputs.model (model.joblib, a MultiOutputClassifier) predicts 2"),
        ("multi_values", "train.outputs.model: the trained model predicts 2 outputs per row"),
    ],
)
def test_train_refuses_a_model_predicting_several_outputs_per_row_in_one_line(
    root: Path, kind: str, said: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_cli("train", "--config", str(root), "--param", f"kind={kind}") == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and said in lines[0], err
    assert "Traceback" not in err
    store = MlflowClient(f"sqlite:///{root / '.mlops' / 'mlflow.db'}")
    runs = store.search_runs([e.experiment_id for e in store.search_experiments()])
    assert not any(r.data.tags.get("mlops.complete") == "true" for r in runs)


def test_a_production_model_predicting_several_outputs_is_refused_by_compare_and_package(
    root: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A version registered outside train (or by an older mlops-ci) reaches the other verbs:
    each refuses it in one line, exit 2, never exit 4. The candidate is logged as train logs
    one (without its evaluation record: compare scores it)."""
    from sklearn.linear_model import LinearRegression, LogisticRegression

    monkeypatch.chdir(root)  # MLflow's default experiment keeps its artifacts under ./mlruns
    reg = MlflowRegistry.for_config(load_config(root))
    data = pd.read_csv(root / "data" / "train.csv")
    two = LinearRegression().fit(data[FEATURES], data[["x1", "x2"]])
    one = LogisticRegression().fit(data[FEATURES], data["label"])
    mlflow.set_tracking_uri(reg.uri)
    with mlflow.start_run():
        mlflow.sklearn.log_model(two, name="model", registered_model_name="answers")
    reg.client.set_registered_model_alias("answers", "production", "1")
    with mlflow.start_run() as candidate:
        logged = mlflow.sklearn.log_model(one, name="model")
        mlflow.set_tag(TAG_MODEL_URI, logged.model_uri)

    for verb in (
        ["compare", "--run", candidate.info.run_id],
        ["package", "--version", "@production", "--no-build"],
    ):
        assert run_cli(*verb, "--config", str(root)) == 2, verb
        err = capsys.readouterr().err
        assert "predicts 2 outputs per row" in err and "Traceback" not in err, (verb, err)
        assert len([line for line in err.splitlines() if line.startswith("error:")]) == 1, err
