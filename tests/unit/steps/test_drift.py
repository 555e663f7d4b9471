"""Drift on the example data: a shifted copy drifts, fresh samples of the same distribution do
not (fixed seeds), and every reader (CSV, Parquet, the serve input log) gives the same answer;
free text compared as text; prediction drift against the production model's own predictions."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from mlops_ci.config.types import Config, load_config
from mlops_ci.evaluation import predictions as evalcache
from mlops_ci.evaluation.data import load_evaluation
from mlops_ci.registry import EVALUATION_ARTIFACT
from mlops_ci.steps.drift import DRIFTED, STABLE, TOO_FEW, drift
from tests.support.fakes import InMemoryRegistry
from tests.support.helpers import run_cli
from tests.support.runs import in_production
from tests.support.store import copy_example
from tests.unit.monitor.test_text import texts

SAMPLES = 100


def reference(config: Config) -> pd.DataFrame:
    return pd.read_csv(config.resolve(config.monitor.drift.reference))


def same_distribution(config: Config, seed: int, rows: int = 1000) -> pd.DataFrame:
    """A fresh sample of the reference's (empirical) distribution."""
    return reference(config).sample(rows, replace=True, random_state=seed).reset_index(drop=True)


def test_shifted_copy_drifts_and_names_the_feature(config: Config, tmp_path: Path) -> None:
    shifted = same_distribution(config, 0)
    shifted["petal_length"] += shifted["petal_length"].std()  # one standard deviation
    shifted.to_csv(tmp_path / "shifted.csv", index=False)
    result = drift(config, current=str(tmp_path / "shifted.csv"))
    assert result.verdict == DRIFTED
    assert [f.name for f in result.drifted] == ["petal_length"]
    feature = {f.name: f for f in result.features}["petal_length"]
    assert feature.psi >= 0.2 and feature.p_value is not None and feature.p_value < 1e-6
    assert feature.outside_range is not None and feature.outside_range > 0.1
    record = json.loads((config.root / ".mlops" / "drift.json").read_text())
    assert record["verdict"] == "drift"
    report = (config.root / ".mlops" / "drift.md").read_text()
    assert "| petal_length |" in report and "xychart-beta" in report


def test_false_positive_rate_over_100_same_distribution_samples(
    config: Config, tmp_path: Path
) -> None:
    flagged = 0
    worst = 0.0
    for seed in range(SAMPLES):
        path = tmp_path / f"same-{seed}.csv"
        same_distribution(config, seed).to_csv(path, index=False)
        result = drift(config, current=str(path))
        flagged += result.verdict == DRIFTED
        worst = max(worst, *(f.psi for f in result.features if f.kind == "numeric"))
    print(f"false positives: {flagged}/{SAMPLES}; largest PSI {worst:.3f}")
    assert flagged / SAMPLES <= 0.01 and worst < 0.2


def write_log(folder: Path, rows: pd.DataFrame, predictions: Any, shadow: Any = None) -> Path:
    """``rows`` as serve logs them, with ``predictions``; with ``shadow``, a shadow version's
    record of each row beside the primary's (its prediction ``shadow``), as serve writes it."""
    folder.mkdir()
    with open(folder / "inputs-20260101T000000-1-0001.jsonl", "w") as fh:
        for i, (record, label) in enumerate(zip(rows.to_dict("records"), predictions, strict=True)):
            logged = {"ts": 0, "request_id": f"r{i}", "row": 0, "version": "1", "inputs": record}
            fh.write(json.dumps({**logged, "prediction": label}) + "\n")
            if shadow is not None:
                shadowed = {**logged, "version": "2", "shadow": True, "prediction": shadow}
                fh.write(json.dumps(shadowed) + "\n")
    return folder


def test_the_serve_input_log_and_parquet_read_like_csv(
    config: Config, fake_registry: InMemoryRegistry, tmp_path: Path
) -> None:
    in_production(fake_registry, config)
    model = fake_registry.models["models:/m-run1"]
    rows = same_distribution(config, 7, rows=400)
    features = rows.drop(columns=["species"])
    log = write_log(tmp_path / "inputs", features, model.predict(features), shadow="setosa")
    (log / "inputs-20260101T000000-1-0002.jsonl.open").write_text('{"torn": ')  # not finished
    features.to_parquet(tmp_path / "current.parquet")
    from_log = drift(config, current=str(log), registry=fake_registry)
    from_parquet = drift(config, current=str(tmp_path / "current.parquet"))
    assert from_log.verdict == from_parquet.verdict == STABLE
    by_name = {f.name: f.psi for f in from_parquet.features}
    assert {f.name: f.psi for f in from_log.features if f.kind == "numeric"} == by_name
    (prediction,) = [f for f in from_log.features if f.kind == "prediction"]
    assert prediction.test == "chi2" and not prediction.drifted and prediction.current_rows == 400
    assert prediction.reference_rows == len(reference(config))  # the model's, on every row
    assert from_log.prediction == (
        "logged predictions against production (iris-classifier v1)'s predictions on the "
        "reference rows (scored now)"
    )
    assert from_parquet.prediction is None  # no logged predictions: nothing to say


def test_prediction_drift_is_against_the_same_models_predictions_not_the_target(
    config: Config, fake_registry: InMemoryRegistry, tmp_path: Path
) -> None:
    """A weak model (0.83 accuracy) predicts other shares than the target has: rows drawn
    from the training data itself, with its predictions, are no prediction drift."""
    in_production(fake_registry, config, c=0.01)
    model = fake_registry.models["models:/m-run1"]
    rows = same_distribution(config, 5, rows=1000).drop(columns=["species"])
    own = drift(config, current=str(write_log(tmp_path / "own", rows, model.predict(rows))),
                registry=fake_registry)  # fmt: skip
    (prediction,) = [f for f in own.features if f.kind == "prediction"]
    target = reference(config)["species"].value_counts(normalize=True)
    predicted = pd.Series(model.predict(rows)).value_counts(normalize=True)
    assert float((predicted - target).abs().max()) > 0.05  # the target is not the yardstick
    assert prediction.psi < 0.02 and not prediction.drifted
    one_class = write_log(tmp_path / "setosa", rows, ["setosa"] * len(rows))
    (changed,) = [
        f for f in drift(config, current=str(one_class), registry=fake_registry).features
        if f.kind == "prediction"
    ]  # fmt: skip
    assert changed.drifted and changed.psi > 2 and changed.note.endswith("(scored now)")


def test_without_a_production_model_prediction_drift_is_left_out_saying_why(
    config: Config, fake_registry: InMemoryRegistry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = same_distribution(config, 5, rows=300)
    log = write_log(tmp_path / "log", rows.drop(columns=["species"]), rows["species"])
    results = {
        "none": drift(config, current=str(log), registry=None),
        "empty": drift(config, current=str(log), registry=fake_registry),
    }
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/absent.db")
    results["absent"] = drift(config, current=str(log))  # mlops.yaml's registry: none there
    for result in results.values():
        assert [f.kind for f in result.features] == ["numeric"] * 4 and result.verdict == STABLE
    assert results["none"].prediction == "prediction drift left out: no registry"
    assert results["empty"].prediction == (
        "prediction drift left out: no version of iris-classifier has the alias 'production' "
        "in memory://"
    )
    assert results["absent"].prediction == (
        f"prediction drift left out: no registry: {tmp_path}/absent.db (MLFLOW_TRACKING_URI) "
        "does not exist"
    )
    assert not (tmp_path / "absent.db").exists()
    report = (config.root / ".mlops" / "drift.md").read_text()
    assert "- Prediction drift: prediction drift left out: no registry:" in report


def test_on_evaluate_data_the_predictions_train_recorded_are_used(
    config: Config, fake_registry: InMemoryRegistry, tmp_path: Path
) -> None:
    """The reference is evaluate.data and the version's train scored exactly those rows: its
    record is the reference's predictions, no model loaded."""
    in_production(fake_registry, config)
    model = fake_registry.models["models:/m-run1"]
    evaluated = evalcache.record(model, load_evaluation(config)).text
    assert evaluated is not None
    fake_registry.artifacts[f"run1/{EVALUATION_ARTIFACT}"] = evaluated.encode()

    def refuse(uri: str, runner: Any) -> Any:
        raise AssertionError("the model was loaded")

    fake_registry.load_model = refuse  # type: ignore[method-assign]
    rows = same_distribution(config, 5, rows=300).drop(columns=["species"])
    log = write_log(tmp_path / "log", rows, model.predict(rows))
    result = drift(config, reference=str(config.resolve("data/test.csv")), current=str(log),
                   registry=fake_registry)  # fmt: skip
    (prediction,) = [f for f in result.features if f.kind == "prediction"]
    assert prediction.reference_rows == 60 and not prediction.drifted
    assert prediction.note.endswith("(as its train recorded them)")


def test_a_regressors_predictions_are_compared_as_numbers(tmp_path: Path) -> None:
    from sklearn.linear_model import Ridge

    config = load_config(copy_example(tmp_path / "diabetes", "diabetes"))
    train = reference(config)
    model = Ridge().fit(train.drop(columns=["target"]), train["target"])
    registry = InMemoryRegistry()
    version = registry.create_version(config.model.name, registry.add_run(model), {}, "")
    registry.set_alias(config.model.name, "production", version.version)
    rows = train.sample(600, replace=True, random_state=1).drop(columns=["target"])
    own = write_log(tmp_path / "own", rows, model.predict(rows))
    (same,) = [f for f in drift(config, current=str(own), registry=registry).features
               if f.kind == "prediction"]  # fmt: skip
    assert same.test == "ks" and not same.drifted and same.psi < 0.1
    assert same.reference_rows == len(train) and same.reference_range is not None
    higher = write_log(tmp_path / "higher", rows, model.predict(rows) + 80)
    (moved,) = [f for f in drift(config, current=str(higher), registry=registry).features
                if f.kind == "prediction"]  # fmt: skip
    assert moved.drifted and moved.p_value is not None and moved.p_value < 1e-6


def test_free_text_is_compared_by_length_and_words_a_few_values_stay_categories(
    config: Config, tmp_path: Path
) -> None:
    ref = same_distribution(config, 1, rows=3000).assign(
        review=texts(3000, seed=1), size=lambda d: np.where(d.index % 3, "small", "large")
    )
    ref.to_csv(tmp_path / "ref.csv", index=False)
    same = same_distribution(config, 2).assign(review=texts(1000, seed=2), size="small")
    same.to_csv(tmp_path / "same.csv", index=False)
    result = drift(config, reference=str(tmp_path / "ref.csv"), current=str(tmp_path / "same.csv"))
    by_name = {f.name: f for f in result.features}
    review = by_name["review"]
    print(f"same-generator text: PSI {review.psi:.3f}, p {review.p_value}")
    assert review.kind == "text" and review.test == "length+tokens" and not review.drifted
    assert review.psi < 0.1 and review.reference_range is not None  # of lengths, in characters
    assert "tokens hashed into 64 buckets" in review.note
    assert by_name["size"].kind == "categorical" and by_name["size"].drifted  # all "small"
    report = (config.root / ".mlops" / "drift.md").read_text()
    assert "| review (text) |" in report and "- `review`: compared as free text:" in report
    other = same.assign(review=texts(1000, seed=3, vocabulary=9), size=ref["size"][:1000])
    other.to_csv(tmp_path / "other.csv", index=False)
    result = drift(config, reference=str(tmp_path / "ref.csv"), current=str(tmp_path / "other.csv"))
    assert result.verdict == DRIFTED and [f.name for f in result.drifted] == ["review"]


def test_categories_missing_values_and_too_few_rows(config: Config, tmp_path: Path) -> None:
    ref = reference(config).assign(site=lambda d: np.where(d.index % 2, "north", "south"))
    ref.to_csv(tmp_path / "ref.csv", index=False)
    cur = same_distribution(config, 3).assign(site="north")
    cur.loc[cur.index[:300], "sepal_width"] = np.nan
    cur.to_csv(tmp_path / "cur.csv", index=False)
    result = drift(config, reference=str(tmp_path / "ref.csv"), current=str(tmp_path / "cur.csv"))
    by_name = {f.name: f for f in result.features}
    assert by_name["site"].kind == "categorical" and by_name["site"].drifted
    assert by_name["site"].test == "chi2" and (by_name["site"].p_value or 1) < 1e-6
    assert by_name["sepal_width"].current_missing == pytest.approx(0.3)
    cur.head(20).to_csv(tmp_path / "few.csv", index=False)
    assert drift(config, current=str(tmp_path / "few.csv")).verdict == TOO_FEW


def test_bad_input_is_named(
    config: Config, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pd.DataFrame({"sepal_length": [1.0]}).to_csv(tmp_path / "narrow.csv", index=False)
    code = run_cli("drift", "-c", str(config.root), "--current", str(tmp_path / "narrow.csv"))
    assert code == 2 and "column 'sepal_width' is missing" in capsys.readouterr().err
    assert run_cli("drift", "-c", str(config.root), "--current", str(tmp_path / "nope")) == 2
    assert "nope: no such file or folder" in capsys.readouterr().err


def test_a_torn_line_costs_itself_not_its_segment(config: Config, tmp_path: Path) -> None:
    """A segment with a line a full disk tore mid-file: drift reads every other row, says the
    line it skipped (report and record), and does not stop at exit 2."""
    rows = same_distribution(config, 11, rows=300).drop(columns=["species"])
    log = tmp_path / "inputs"
    log.mkdir()
    segment = log / "inputs-20260101T000000-1-0001.jsonl"
    lines = [json.dumps({"ts": 0, "version": "1", "inputs": r}) for r in rows.to_dict("records")]
    lines.insert(100, lines[100][:37] + lines[101])  # half a line, the next batch glued to it
    segment.write_text("\n".join(lines) + "\n")
    result = drift(config, current=str(log))
    assert result.current_rows == 300 and result.verdict == STABLE
    assert result.skipped_lines == 1 and result.skipped_at == [f"{segment}:101"]
    record = json.loads((config.root / ".mlops" / "drift.json").read_text())
    assert record["skipped_lines"] == 1 and record["skipped_at"] == [f"{segment}:101"]
    report = (config.root / ".mlops" / "drift.md").read_text()
    assert f"skipped 1 line that is not a valid JSON object in {segment}:101" in report
