"""Every chart of a report parses with mermaid itself (node, with mermaid and jsdom from npm)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from mlops_ci.report import charts
from mlops_ci.steps.compare import compare
from mlops_ci.steps.report import report
from tests.support.regression import regression

pytestmark = pytest.mark.timeout(120)


HERE = Path(__file__).resolve().parents[1]


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
