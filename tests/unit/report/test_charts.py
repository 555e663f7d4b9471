"""The report's charts: metrics of other scales get charts of their own."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from mlops_ci.report.charts import by_scale
from mlops_ci.steps.compare import compare
from mlops_ci.steps.report import report
from tests.support.regression import regression


@pytest.mark.timeout(120)
def test_metrics_of_other_scales_get_charts_of_their_own(tmp_path: Path) -> None:
    assert by_scale({"rmse": 121_766.0, "mae": 95_000.0, "r2": 0.27}) == [["r2"], ["rmse", "mae"]]
    assert by_scale({"f1_macro": 0.95, "accuracy": 0.96}) == [["f1_macro", "accuracy"]]
    config, reg, run_id = regression(tmp_path)
    compare(config, reg, run_id)
    text = report(config, reg, "pr").markdown
    axes = re.findall(r"    x-axis \[(.*)\]", text)
    assert '"r2"' in axes[0] and '"rmse", "mae"' in axes[1]
    assert all('"line"' in a and '"a b"' in a for a in axes[2:3])  # importance: quoted names
