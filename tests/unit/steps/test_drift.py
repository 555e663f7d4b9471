"""Drift on the example data: a shifted copy drifts, fresh samples of the same distribution do
not (fixed seeds), and every reader (CSV, Parquet, the serve input log) gives the same answer."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlops_ci.config.types import Config
from mlops_ci.steps.drift import DRIFTED, STABLE, TOO_FEW, drift
from tests.support.helpers import run_cli

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


def test_the_serve_input_log_and_parquet_read_like_csv(config: Config, tmp_path: Path) -> None:
    rows = same_distribution(config, 7, rows=400)
    features = rows.drop(columns=["species"])
    log = tmp_path / "inputs"
    log.mkdir()
    with open(log / "inputs-20260101T000000-1-0001.jsonl", "w") as fh:
        for record, label in zip(features.to_dict(orient="records"), rows["species"], strict=True):
            fh.write(json.dumps({"ts": 0, "version": "1", "inputs": record, "prediction": label}))
            fh.write("\n")
    (log / "inputs-20260101T000000-1-0002.jsonl.open").write_text('{"torn": ')  # not finished
    features.to_parquet(tmp_path / "current.parquet")
    from_log = drift(config, current=str(log))
    from_parquet = drift(config, current=str(tmp_path / "current.parquet"))
    assert from_log.verdict == from_parquet.verdict == STABLE
    by_name = {f.name: f.psi for f in from_parquet.features}
    assert {f.name: f.psi for f in from_log.features if f.kind == "numeric"} == by_name
    (prediction,) = [f for f in from_log.features if f.kind == "prediction"]
    assert prediction.test == "chi2" and not prediction.drifted and prediction.current_rows == 400


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
