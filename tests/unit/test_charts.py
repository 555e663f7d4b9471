"""What a reviewer reads in a refused regression: one sign per gap, every metric readable on
its chart, charts that mermaid itself parses, what changed."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from mlops_ci.config.types import Config, load_config
from mlops_ci.report import charts
from mlops_ci.report.charts import by_scale
from mlops_ci.steps.compare import compare
from mlops_ci.steps.report import report
from tests.support.fakes import InMemoryRegistry

pytestmark = pytest.mark.timeout(120)
# Features named like mermaid keywords, with a space, and unicode.
FEATURES = ["line", "bar", "title", "a b", "größe"]
HERE = Path(__file__).resolve().parents[1]


class Noisy:
    """A regressor answering the target plus seeded noise of a given size."""

    def __init__(self, target: pd.Series, scale: float, seed: int) -> None:
        self.answers = target.to_numpy() + np.random.default_rng(seed).normal(0, scale, len(target))

    def predict(self, features: Any) -> Any:
        return self.answers + 0.01 * features["line"].to_numpy()  # leans on 'line'


def regression(tmp_path: Path) -> tuple[Config, InMemoryRegistry, str]:
    """rmse around 120,000 beside r2 around 0.3: production better than the candidate."""
    rng = np.random.default_rng(1)
    frame = pd.DataFrame(rng.normal(size=(300, len(FEATURES))), columns=FEATURES)
    frame["price"] = 150_000 * rng.normal(size=300)
    (tmp_path / "data").mkdir()
    frame.to_csv(tmp_path / "data" / "test.csv", index=False)
    (tmp_path / "mlops.yaml").write_text(
        "version: 1\nmodel: {name: houses, task: regression}\ntrain: {command: python t.py}\n"
        "evaluate: {data: data/test.csv, target: price, metrics: [rmse, mae, r2]}\n"
        "gate:\n  rules:\n    - {metric: rmse, must: not_worse_than_production, tolerance: 0.005}\n"
    )
    config = load_config(tmp_path)
    target = frame["price"]
    reg = InMemoryRegistry()
    prod_run = reg.add_run(Noisy(target, 118_000, 2))
    prod_run.params.update({"n_estimators": "300", "max_depth": "8"})
    version = reg.create_version("houses", prod_run, {}, "")
    reg.set_alias("houses", "production", version.version)
    cand_run = reg.add_run(Noisy(target, 125_000, 3))
    cand_run.params.update({"n_estimators": "3", "max_depth": "2"})
    return config, reg, cand_run.run_id


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


def mermaid_blocks(text: str) -> list[str]:
    return re.findall(r"```mermaid\n(.*?)```", text, re.S)


def test_every_chart_parses_with_mermaid_itself(tmp_path: Path) -> None:
    """mermaid 11 (what GitHub renders with) parses each block; a bare `line` category did
    not. Needs MERMAID_MODULES: a folder whose node_modules has mermaid and jsdom (.ci/run
    installs them)."""
    modules = os.environ.get("MERMAID_MODULES")
    node = shutil.which("node")
    if not modules or node is None:
        pytest.skip("MERMAID_MODULES (mermaid and jsdom from npm) or node not here")
    config, reg, run_id = regression(tmp_path)
    compare(config, reg, run_id)
    blocks = mermaid_blocks(report(config, reg, "pr").markdown)
    assert len(blocks) == 3  # two scales of metrics, the importance
    bare = blocks[2].replace('"line"', "line").replace('"bar"', "bar")
    # A pipeline's stages, named as mermaid keywords and with characters that end strings.
    graph = {
        "training": "end",
        "stages": [
            {"name": "prepare", "state": "cached", "seconds": 0.0, "upstream": []},
            {"name": 'graph "x" %%', "state": "ran", "seconds": 1.25, "upstream": ["prepare"]},
            {"name": "end", "state": "ran", "seconds": 3.0, "upstream": ['graph "x" %%']},
        ],
    }
    flow = "\n".join(charts.stages_flowchart(graph)[1:-1])
    assert "s0 --> s1" in flow and "s1 --> s2" in flow and "end · model · ran 3.0 s" in flow
    blocks.append(flow)
    done = subprocess.run(
        [node, str(HERE / "js" / "mermaid_parse.mjs"), modules],
        input=json.dumps([*blocks, bare]),
        capture_output=True,
        text=True,
        timeout=90,
        check=True,
    )
    *ours, unquoted = json.loads(done.stdout)
    assert ours == [None] * len(blocks), ours
    assert unquoted is not None and "Parse error" in unquoted  # the test can fail
