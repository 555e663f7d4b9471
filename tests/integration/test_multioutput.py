"""A model predicting several outputs per row is refused in one line, exit 2, by train and by
every verb it reaches (real MLflow SQLite store). (A classifier answering its own labels, a
tuned threshold's, on every path is held by test_any_python_model.py's
FixedThresholdClassifier case.)"""

from __future__ import annotations

from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from mlops_ci.config.types import load_config
from mlops_ci.registry import TAG_MODEL_URI
from mlops_ci.registry.mlflow import MlflowRegistry
from tests.support.classifier_project import classifier_project
from tests.support.helpers import run_cli

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

FEATURES = ["x1", "x2", "x3"]
TRAIN = """
import json, os
from pathlib import Path

import joblib
import pandas as pd
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.multioutput import MultiOutputClassifier

kind = json.loads(os.environ.get("MLOPS_PARAMS", "{}")).get("kind", "multi_values")
data = pd.read_csv("data/train.csv")
X, y = data[["x1", "x2", "x3"]], data["label"]
if kind == "multi_classifier":
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
        tmp_path / "answers", "answers", TRAIN, rows(300, 0), rows(200, 1), "kind: multi_values"
    )


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return project(tmp_path)


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
    import sklearn
    from sklearn.linear_model import LinearRegression, LogisticRegression

    monkeypatch.chdir(root)  # MLflow's default experiment keeps its artifacts under ./mlruns
    reg = MlflowRegistry.for_config(load_config(root))
    data = pd.read_csv(root / "data" / "train.csv")
    two = LinearRegression().fit(data[FEATURES], data[["x1", "x2"]])
    one = LogisticRegression().fit(data[FEATURES], data["label"])
    # MLflow infers none (a child process importing the model, seconds a model): not tested here
    pinned = [f"scikit-learn=={sklearn.__version__}"]
    mlflow.set_tracking_uri(reg.uri)
    with mlflow.start_run():
        mlflow.sklearn.log_model(
            two, name="model", registered_model_name="answers", pip_requirements=pinned
        )
    reg.client.set_registered_model_alias("answers", "production", "1")
    with mlflow.start_run() as candidate:
        logged = mlflow.sklearn.log_model(one, name="model", pip_requirements=pinned)
        mlflow.set_tag(TAG_MODEL_URI, logged.model_uri)

    for verb in (
        ["compare", "--run", candidate.info.run_id],
        ["package", "--version", "@production", "--no-build"],
    ):
        assert run_cli(*verb, "--config", str(root)) == 2, verb
        err = capsys.readouterr().err
        assert "predicts 2 outputs per row" in err and "Traceback" not in err, (verb, err)
        assert len([line for line in err.splitlines() if line.startswith("error:")]) == 1, err
