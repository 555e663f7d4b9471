"""package.onnx auto falls back to the native model when onnxruntime cannot load the converted
graph, not only when the converter refuses: a TfidfVectorizer (lowercase=True, its default) in
a ColumnTransformer converts into a StringNormalizer that asks for the en_US.UTF-8 locale,
which onnxruntime cannot construct where the locale is not installed (this machine). Under
package.onnx true the same failure is one exit-2 line naming it. Real skl2onnx, onnxruntime,
model runner and MLflow (SQLite)."""

from __future__ import annotations

import json
import locale
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlops_ci.config.types import load_config
from mlops_ci.registry.mlflow import MlflowRegistry
from mlops_ci.steps.package import package
from mlops_ci.steps.register import register
from mlops_ci.steps.train import train
from tests.support.classifier_project import classifier_project, config_text
from tests.support.helpers import run_cli

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

TRAIN = """
from pathlib import Path

import joblib
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline

data = pd.read_csv("data/train.csv")
columns = ColumnTransformer([("text", TfidfVectorizer(), "review"), ("x", "passthrough", ["x"])])
model = make_pipeline(columns, LogisticRegression()).fit(data[["review", "x"]], data["label"])
Path("outputs").mkdir(exist_ok=True)
joblib.dump(model, "outputs/model.joblib")
Path("outputs/metrics.json").write_text("{}")
"""
WORDS = ["Good", "bad", "GREAT", "awful", "fine", "Poor"]


def rows(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    picked = rng.integers(0, len(WORDS), size=(n, 2))
    review = [f"{WORDS[a]} and {WORDS[b]}" for a, b in picked]
    good = (picked % 2 == 0).sum(axis=1) + rng.normal(scale=0.5, size=n)
    return pd.DataFrame(
        {"review": review, "x": rng.normal(size=n).round(3), "label": np.where(good > 1, "y", "n")}
    )


def has_locale(name: str) -> bool:
    saved = locale.setlocale(locale.LC_CTYPE)
    try:
        locale.setlocale(locale.LC_CTYPE, name)
    except locale.Error:
        return False
    finally:
        locale.setlocale(locale.LC_CTYPE, saved)
    return True


@pytest.mark.skipif(
    has_locale("en_US.UTF-8"),
    reason="en_US.UTF-8 is installed here: onnxruntime loads the text normaliser "
    "(tests/unit/packaging/test_runtime.py holds graphs that fail to load or run anywhere)",
)
def test_a_converted_graph_onnxruntime_cannot_load_falls_back_to_the_native_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    root = classifier_project(tmp_path / "reviews", "reviews", TRAIN, rows(200, 0), rows(80, 1))
    config = load_config(root)
    reg = MlflowRegistry.for_config(config)
    version = register(config, reg, train(config, reg).run_id, force=True).version

    packaged = package(config, reg, version, build=False)
    assert packaged.format == "sklearn" and packaged.parity is None
    note = packaged.note or ""
    assert note.startswith("ONNX: not used — onnxruntime cannot load the converted model here: ")
    assert "en_US.UTF-8" in note and "\n" not in note and len(note) < 400
    assert note.endswith("; serving the native model (package.onnx: auto)")
    assert packaged.served_parity is not None and packaged.served_parity.differing_rows == 0
    assert json.loads((root / ".mlops" / "package.json").read_text())["note"] == note
    assert reg.get_version("reviews", version).tags["mlops.package.note"] == note
    assert "[E:onnxruntime" not in capfd.readouterr().err  # no log of a failure it handles

    (root / "mlops.yaml").write_text(config_text("reviews", onnx="true"))
    assert run_cli("package", "--config", str(root), "--version", version, "--no-build") == 2
    err = capfd.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, err
    assert errors[0].startswith("error: onnxruntime cannot load the converted model here: ")
    assert "en_US.UTF-8" in errors[0] and "Traceback" not in err
