"""quality on hand-written input-log records and label files: each version's metrics are
compare's on the same arrays, a clearly worse shadow is refused by the paired bootstrap and an
equal one passes, periods split by time, production held to the gate's bounds (exit 1 and the
event), and bad label files are one line naming the file, exit 2."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from mlops_ci.config.types import Config, load_config
from mlops_ci.errors import InputError
from mlops_ci.metrics import Encoded, score
from mlops_ci.steps.quality import quality
from tests.support.helpers import run_cli

CLASSES = np.array(["setosa", "versicolor", "virginica"])
START = 1_700_002_800.0  # a whole hour (UTC)
CONFIG = """\
version: 1
model: {name: iris, task: classification}
train: {command: python train.py}
evaluate: {data: data/test.csv, target: species, metrics: [accuracy, f1_macro], slices: [petal]}
gate:
  rules:
    - {metric: f1_macro, must: not_worse_than_production, tolerance: 0.005, slice: all}
    - {metric: accuracy, min: MIN}
    - {metric: cv_accuracy, min: 0.85}
  bootstrap_samples: 400
monitor: {log_dir: log, quality: {min_rows: 100, every: 1h}}
"""


def project(tmp_path: Path, minimum: float = 0.8) -> Config:
    (tmp_path / "mlops.yaml").write_text(CONFIG.replace("MIN", str(minimum)))
    return load_config(tmp_path)


def answers(truth: np.ndarray, right: float, rng: np.random.Generator) -> np.ndarray:
    wrong = CLASSES[(np.searchsorted(CLASSES, truth) + rng.integers(1, 3, len(truth))) % 3]
    return np.where(rng.random(len(truth)) < right, truth, wrong)


def traffic(
    tmp_path: Path, requests: int = 300, shadow: str = "equal", seed: int = 0
) -> dict[str, Any]:
    """Requests of 1 or 2 rows over three hours, answered by v1; v2 scores them as a shadow
    (``equal``: the same answers; ``worse``: right 55 % of the time); the labels of all
    but the last 10 requests, written to labels.csv."""
    rng = np.random.default_rng(seed)
    sizes = rng.integers(1, 3, requests)
    n = int(sizes.sum())
    truth = CLASSES[rng.integers(0, 3, n)]
    primary = answers(truth, 0.9, rng)
    second = primary if shadow == "equal" else answers(truth, 0.55, rng)
    keys = [(f"r{i}", row) for i, size in enumerate(sizes) for row in range(size)]
    ts = START + np.sort(rng.random(requests)) * 3 * 3600
    petal = rng.random(n) * 6
    records = []
    for j, (request, row) in enumerate(keys):
        base = {
            "ts": float(ts[int(request[1:])]),
            "request_id": request,
            "row": row,
            "model": "iris",
            "inputs": {"petal": float(petal[j])},
            "scores": [0.2, 0.3, 0.5],
        }
        records.append(base | {"version": "1", "prediction": str(primary[j])})
        records.append(base | {"version": "2", "prediction": str(second[j]), "shadow": True})
    log = tmp_path / "log"
    log.mkdir()
    (log / "inputs-1.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    labelled = [j for j, (request, _) in enumerate(keys) if int(request[1:]) < requests - 10]
    pd.DataFrame(
        {
            "request_id": [keys[j][0] for j in labelled],
            "row": [keys[j][1] for j in labelled],
            "species": truth[labelled],
        }
    ).to_csv(tmp_path / "labels.csv", index=False)
    return {
        "truth": truth[labelled],
        "primary": primary[labelled],
        "shadow": second[labelled],
        "ts": np.array([ts[int(keys[j][0][1:])] for j in labelled]),
        "unlabelled": n - len(labelled),
    }


def offline(truth: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    enc, (pred,) = Encoded.of("classification", truth, predicted)
    return {m: score(m, enc, pred) for m in ("accuracy", "f1_macro")}


def test_each_versions_metrics_are_compares_on_the_same_rows(tmp_path: Path) -> None:
    config = project(tmp_path)
    made = traffic(tmp_path, shadow="worse")
    record = quality(config, labels="labels.csv").record
    for version, key in (("1", "primary"), ("2", "shadow")):
        live = record["versions"][version]
        assert live["rows"] == len(made["truth"])
        for metric, value in offline(made["truth"], made[key]).items():
            assert abs(live["metrics"][metric] - value) <= 1e-9, (version, metric)
    assert record["versions"]["1"]["primary_rows"] == len(made["truth"])
    assert record["versions"]["2"]["shadow_rows"] == len(made["truth"])
    assert record["unlabelled_rows"] == made["unlabelled"]
    assert record["unmatched_labels"] == 0 and record["unjoinable_rows"] == 0
    saved = json.loads((tmp_path / ".mlops" / "quality.json").read_text())
    assert saved["versions"] == record["versions"]


def test_a_clearly_worse_shadow_is_refused_by_the_paired_bootstrap(tmp_path: Path) -> None:
    config = project(tmp_path)
    traffic(tmp_path, shadow="worse")
    comparison = quality(config, labels="labels.csv").record["comparison"]
    assert (comparison["production"], comparison["candidate"]) == ("1", "2")
    assert comparison["verdict"] == "fail"
    sig = comparison["significance"]
    assert sig["metric"] == "accuracy" and sig["ci_high"] < 0
    status = {c["name"]: c["status"] for c in comparison["checks"]}
    assert status["accuracy not significantly worse"] == "fail"
    assert status["f1_macro not worse than production (tolerance 0.005)"] == "fail"
    assert status["cv_accuracy (gate.rules.2)"] == "skipped"  # a training metric: not on live rows
    assert comparison["slices"] and all(s["column"] == "petal" for s in comparison["slices"])


def test_an_equal_shadow_passes(tmp_path: Path) -> None:
    config = project(tmp_path)
    made = traffic(tmp_path, shadow="equal")
    result = quality(config, labels="labels.csv")
    comparison = result.record["comparison"]
    assert comparison["verdict"] == "pass" and result.verdict == "pass"
    assert comparison["rows"] == len(made["truth"])
    assert comparison["significance"]["difference"] == 0.0
    assert not [c for c in comparison["checks"] if c["status"] == "fail"]
    assert result.record["production_health"]["verdict"] == "healthy"


def test_too_few_paired_rows_are_inconclusive(tmp_path: Path) -> None:
    config = project(tmp_path)
    traffic(tmp_path, requests=40, shadow="worse")
    comparison = quality(config, labels="labels.csv").record["comparison"]
    assert comparison["verdict"] == "inconclusive"
    assert "fewer than monitor.quality.min_rows (100)" in comparison["reason"]


def test_periods_hold_each_versions_metrics_on_the_rows_of_that_hour(tmp_path: Path) -> None:
    config = project(tmp_path)
    made = traffic(tmp_path, shadow="worse")
    record = quality(config, labels="labels.csv").record
    starts = [p["start"] for p in record["periods"]]
    assert starts == ["2023-11-14T23:00:00Z", "2023-11-15T00:00:00Z", "2023-11-15T01:00:00Z"]
    for i, period in enumerate(record["periods"]):
        hour = (made["ts"] >= START + i * 3600) & (made["ts"] < START + (i + 1) * 3600)
        for version, key in (("1", "primary"), ("2", "shadow")):
            found = period["versions"][version]
            assert found["rows"] == int(hour.sum())
            expected = offline(made["truth"][hour], made[key][hour])
            assert found["metrics"] == pytest.approx(expected, abs=1e-9)
    hourly = quality(config, labels="labels.csv", every="30m").record["periods"]
    assert len(hourly) == 6
    report = (tmp_path / ".mlops" / "quality.md").read_text()
    assert "xychart-beta" in report and report.count("    line [") == 2


def test_production_breaking_a_bound_is_degraded_exit_1_and_the_event(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    project(tmp_path, minimum=0.95)
    traffic(tmp_path, shadow="equal")
    sent: list[tuple[str, dict[str, Any]]] = []
    monkeypatch.setattr(
        "mlops_ci.events.emit", lambda config, name, subject, data: sent.append((name, data)) or []
    )
    monkeypatch.chdir(tmp_path)
    assert run_cli("quality", "--labels", "labels.csv") == 1
    assert "live quality of iris v1 breaks the gate: accuracy ≥ 0.95" in capsys.readouterr().err
    ((name, data),) = sent
    assert name == "model.quality.degraded" and data["version"] == "1"
    assert data["failed"] == ["accuracy ≥ 0.95"] and data["rows"] > 100
    record = json.loads((tmp_path / ".mlops" / "quality.json").read_text())
    assert record["production_health"]["verdict"] == "degraded"
    project(tmp_path, minimum=0.8)
    sent.clear()
    assert run_cli("quality", "--labels", "labels.csv") == 0
    assert [name for name, _ in sent] == ["model.quality.checked"]


def test_a_label_file_without_the_target_is_one_line_exit_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    project(tmp_path)
    traffic(tmp_path)
    (tmp_path / "wrong.csv").write_text("request_id,label\nr1,setosa\n")
    monkeypatch.chdir(tmp_path)
    assert run_cli("quality", "--labels", "wrong.csv") == 2
    err = capsys.readouterr().err
    assert err.splitlines()[0] == (
        f"error: {tmp_path / 'wrong.csv'}: no column 'species' (evaluate.target)"
    )
    assert "Traceback" not in err


def test_a_duplicate_label_is_one_line_naming_file_and_line_exit_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    project(tmp_path)
    traffic(tmp_path)
    path = tmp_path / "labels.csv"
    path.write_text(path.read_text() + "r0,0,virginica\n")
    lines = len(path.read_text().splitlines())
    monkeypatch.chdir(tmp_path)
    assert run_cli("quality", "--labels", "labels.csv") == 2
    err = capsys.readouterr().err.splitlines()[0]
    assert err == (
        f"error: {path}:{lines}: a second label for request 'r0' row 0 (the first is at {path}:2)"
    )


def test_no_labels_and_a_bad_period_are_refused(tmp_path: Path) -> None:
    config = project(tmp_path)
    traffic(tmp_path)
    with pytest.raises(InputError, match="no labels to join: give --labels FILE"):
        quality(config)
    with pytest.raises(InputError, match="--every: '1 hour' is not a duration"):
        quality(config, labels="labels.csv", every="1 hour")
    with pytest.raises(InputError, match="--candidate: version '1' scored no labelled row as"):
        quality(config, labels="labels.csv", candidate="1")


def test_several_primaries_ask_the_registry_which_is_production(tmp_path: Path) -> None:
    config = project(tmp_path)
    log = tmp_path / "log"
    log.mkdir()
    rows = [("a", "1"), ("b", "1"), ("c", "3")]  # a canary: v3 answered one request
    (log / "inputs-1.jsonl").write_text(
        "".join(
            json.dumps({"ts": START, "request_id": r, "row": 0, "version": v, "prediction": "x"})
            + "\n"
            for r, v in rows
        )
    )
    (tmp_path / "labels.csv").write_text("request_id,species\na,x\nb,x\nc,x\n")
    asked: list[bool] = []

    def alias() -> str:
        asked.append(True)
        return "3"

    record = quality(config, labels="labels.csv", production_alias=alias).record
    assert asked and record["production_health"]["version"] == "3"
    assert record["comparison"] is None
    record = quality(config, labels="labels.csv", production_alias=lambda: None).record
    assert record["production_health"]["version"] == "1"  # the most rows


def test_a_shadow_without_primaries_beside_it_is_inconclusive_not_unreported(
    tmp_path: Path,
) -> None:
    config = project(tmp_path)
    log = tmp_path / "log"
    log.mkdir()
    rows = [("a", "2", True), ("b", "1", False)]  # a's primary record never reached the log
    (log / "inputs-1.jsonl").write_text(
        "".join(
            json.dumps(
                {"ts": START, "request_id": r, "row": 0, "version": v, "prediction": "x"}
                | ({"shadow": True} if shadow else {})
            )
            + "\n"
            for r, v, shadow in rows
        )
    )
    (tmp_path / "labels.csv").write_text("request_id,species\na,x\nb,x\n")
    record = quality(config, labels="labels.csv").record
    assert record["production_health"]["version"] == "1"
    comparison = record["comparison"]
    assert comparison["candidate"] == "2" and comparison["production"] == "1"
    assert comparison["verdict"] == "inconclusive" and comparison["rows"] == 0


def _one_version(tmp_path: Path, predictions: list[Any], labels: list[Any]) -> Config:
    """v1 answered ``predictions`` (one row each); ``labels`` came later, as JSON lines."""
    config = project(tmp_path)
    log = tmp_path / "log"
    log.mkdir()
    lines = [
        {"ts": START, "request_id": f"r{i}", "row": 0, "version": "1", "prediction": p}
        for i, p in enumerate(predictions)
    ]
    (log / "inputs-1.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    rows = [{"request_id": f"r{i}", "row": 0, "species": v} for i, v in enumerate(labels)]
    (tmp_path / "labels.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return config


@pytest.mark.timeout(60)
def test_each_label_keeps_its_own_type_whatever_else_is_in_the_window(tmp_path: Path) -> None:
    config = _one_version(tmp_path, [1, 0, 1, 1], [1, 0, 1.0, 1])
    record = quality(config, str(tmp_path / "labels.jsonl")).record
    # 1.0 is another class than 1 (as compare reads a column), and only that row is wrong:
    # one array type for the window made every 1 a "1.0" and the accuracy 0.25
    assert record["versions"]["1"]["metrics"]["accuracy"] == pytest.approx(0.75)


@pytest.mark.timeout(60)
def test_labels_that_share_no_value_with_productions_answers_are_refused_not_judged(
    tmp_path: Path,
) -> None:
    config = _one_version(tmp_path, [1.0, 0.0, 1.0], ["yes", "no", "yes"])
    with pytest.raises(InputError, match=r"labels.jsonl: version 1: the labels .* share no value"):
        quality(config, str(tmp_path / "labels.jsonl"))
    assert not (tmp_path / ".mlops" / "quality.json").exists()
