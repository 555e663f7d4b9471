"""quality end to end on the iris example: two real scikit-learn models, the better one answering
requests and a worse one scoring them as its shadow, their rows written by serve's own input
log (``InputLog``, as `mlops-ci serve --shadow` writes them); labels arrive later as JSON lines;
`mlops-ci quality` reports each version's metrics equal to the offline metrics of the same
rows, refuses the worse shadow with the paired bootstrap's interval, and passes a shadow that
answers as production does."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.tree import DecisionTreeClassifier

from mlops_ci.metrics import Encoded, score
from mlops_ci.serve.inputlog import InputLog, LogSettings
from tests.support.helpers import run_cli
from tests.support.store import copy_example

FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
REQUESTS = 240


@pytest.fixture
def iris(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return copy_example(tmp_path / "iris")


def serve_traffic(project: Path, folder: Path, shadow: Any) -> dict[str, Any]:
    """Requests of 1 to 3 rows of the example's data, answered by a logistic regression (v1)
    and scored by ``shadow`` (v2) as its shadow; the true species of each row."""
    train = pd.read_csv(project / "data" / "train.csv")
    data = pd.concat([train, pd.read_csv(project / "data" / "test.csv")], ignore_index=True)
    production = LogisticRegression(max_iter=1000).fit(train[FEATURES], train["species"])
    shadow.fit(train[FEATURES], train["species"])
    log = InputLog(LogSettings(folder, "iris-classifier", tuple(FEATURES), flush_seconds=0.05))
    log.start()
    rng = np.random.default_rng(7)
    truth: dict[tuple[str, int], str] = {}
    for i in range(REQUESTS):
        rows = data.iloc[rng.integers(0, len(data), int(rng.integers(1, 4)))]
        x = {name: rows[name].to_numpy(np.float64) for name in FEATURES}
        frame = rows[FEATURES]
        for version, model, submit in (
            ("1", production, log.submit),
            ("2", shadow, functools.partial(log.submit, shadow=True)),
        ):
            submit(version, f"req-{i}", x, model.predict(frame), model.predict_proba(frame))
        truth |= {(f"req-{i}", j): str(s) for j, s in enumerate(rows["species"])}
    log.close()
    return {"truth": truth, "models": {"1": production, "2": shadow}, "data": data}


def send_labels(path: Path, truth: dict[tuple[str, int], str]) -> dict[tuple[str, int], str]:
    """Labels of all but the first 5 requests (they never come), plus 3 for requests never
    served; the labels sent, by (request, row)."""
    sent = {k: v for k, v in truth.items() if int(k[0].split("-")[1]) >= 5}
    lines = [{"request_id": r, "row": row, "species": s} for (r, row), s in sent.items()]
    lines += [{"request_id": f"elsewhere-{i}", "species": "setosa"} for i in range(3)]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return sent


def offline(model: Any, served: dict[str, Any], sent: dict[tuple[str, int], str]) -> Any:
    """The model's metrics on the labelled rows, scored here as compare scores it."""
    lines = [line for p in sorted(served["folder"].glob("inputs-*")) for line in p.open()]
    records = [json.loads(line) for line in lines]
    inputs = {(r["request_id"], r["row"]): r["inputs"] for r in records if not r.get("shadow")}
    keys = sorted(sent)
    frame = pd.DataFrame([inputs[k] for k in keys])[FEATURES]
    truth = np.array([sent[k] for k in keys])
    enc, (pred,) = Encoded.of("classification", truth, model.predict(frame))
    return {m: score(m, enc, pred) for m in ("f1_macro", "accuracy")}, len(keys)


@pytest.mark.timeout(300)
def test_a_worse_shadow_is_refused_on_labelled_live_rows(iris: Path, tmp_path: Path) -> None:
    folder = tmp_path / "inputs"
    served = serve_traffic(iris, folder, DecisionTreeClassifier(max_depth=1, random_state=0))
    served["folder"] = folder
    sent = send_labels(tmp_path / "labels.jsonl", served["truth"])
    code = run_cli(
        "quality", "-c", str(iris), "--labels", str(tmp_path / "labels.jsonl"),
        "--current", str(folder), "--every", "1h",
    )  # fmt: skip
    assert code == 0  # production holds the gate's bounds: the shadow's fail is not an exit 1
    record = json.loads((iris / ".mlops" / "quality.json").read_text())
    for version in ("1", "2"):
        expected, rows = offline(served["models"][version], served, sent)
        live = record["versions"][version]
        assert live["rows"] == rows
        for metric, value in expected.items():
            assert abs(live["metrics"][metric] - value) <= 1e-9, (version, metric)
    assert record["unlabelled_rows"] == len(served["truth"]) - len(sent)
    assert record["unmatched_labels"] == 3 and record["unjoinable_rows"] == 0
    comparison = record["comparison"]
    assert (comparison["production"], comparison["candidate"]) == ("1", "2")
    assert comparison["rows"] == len(sent) and comparison["verdict"] == "fail"
    sig = comparison["significance"]
    assert sig["metric"] == "f1_macro" and sig["ci_high"] < 0  # the interval says worse
    failed = {c["name"] for c in comparison["checks"] if c["status"] == "fail"}
    assert "f1_macro not significantly worse" in failed
    assert {s["column"] for s in comparison["slices"]} == {"sepal_length"}
    assert record["production_health"]["verdict"] == "healthy"
    report = (iris / ".mlops" / "quality.md").read_text()
    assert "Shadow v2 against production v1" in report and "**fail**" in report
    assert "#### Slices (f1_macro;" in report and "| sepal_length=" in report


@pytest.mark.timeout(300)
def test_a_shadow_answering_as_production_passes(iris: Path, tmp_path: Path) -> None:
    folder = tmp_path / "inputs"
    served = serve_traffic(iris, folder, LogisticRegression(max_iter=1000))
    send_labels(tmp_path / "labels.jsonl", served["truth"])
    code = run_cli(
        "quality", "-c", str(iris), "--labels", str(tmp_path / "labels.jsonl"),
        "--current", str(folder),
    )  # fmt: skip
    assert code == 0
    comparison = json.loads((iris / ".mlops" / "quality.json").read_text())["comparison"]
    assert comparison["verdict"] == "pass"
    assert comparison["significance"]["difference"] == 0.0
