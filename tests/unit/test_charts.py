"""What a reviewer reads in a refused regression: one sign per gap, every metric readable on
its chart, charts that mermaid itself parses, what changed."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from mlops_ci.report.charts import by_scale
from mlops_ci.steps.compare import compare
from mlops_ci.steps.report import report
from tests.support.regression import regression

pytestmark = pytest.mark.timeout(120)


def test_a_refused_regression_has_one_sign_per_gap(tmp_path: Path) -> None:
    config, reg, run_id = regression(tmp_path)
    result = compare(config, reg, run_id)
    assert result.verdict == "fail" and result.production is not None
    gap = result.candidate.metrics["rmse"] - result.production.metrics["rmse"]
    assert gap > 0  # the candidate's error is larger: worse
    text = report(config, reg, "pr").markdown
    shown = f"{gap:+.4f}"
    worse = f"worse by {abs(gap):.4f}"
    lines = [line for line in text.splitlines() if shown.lstrip("+") in line]
    # the metric table, the failing rule (twice: headline and all checks) and the bootstrap row
    assert len(lines) >= 4, lines
    for line in lines:
        assert shown in line and worse in line, line
        assert f"-{abs(gap):.4f}" not in line, line
    # r2 grew worse too, and says so in the same words
    r2 = result.candidate.metrics["r2"] - result.production.metrics["r2"]
    assert f"{r2:+.4f} (worse by {abs(r2):.4f}) 🔴" in text
    # what changed, next to the verdict
    top = text.split("| metric |")[0]
    assert "- param `max_depth`: `8` → `2`" in top and "- param `n_estimators`: `300` → `3`" in top


def test_metrics_of_other_scales_get_charts_of_their_own(tmp_path: Path) -> None:
    assert by_scale({"rmse": 121_766.0, "mae": 95_000.0, "r2": 0.27}) == [["r2"], ["rmse", "mae"]]
    assert by_scale({"f1_macro": 0.95, "accuracy": 0.96}) == [["f1_macro", "accuracy"]]
    config, reg, run_id = regression(tmp_path)
    compare(config, reg, run_id)
    text = report(config, reg, "pr").markdown
    axes = re.findall(r"    x-axis \[(.*)\]", text)
    assert '"r2"' in axes[0] and '"rmse", "mae"' in axes[1]
    assert all('"line"' in a and '"a b"' in a for a in axes[2:3])  # importance: quoted names
