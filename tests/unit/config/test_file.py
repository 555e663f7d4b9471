"""mlops.yaml as a file: every problem on one line with its file, line and key; defaults from
the schema; the validated-config cache."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlops_ci.config.types import load_config
from tests.support.slices import NOT_WORSE, grouped_project


@pytest.mark.timeout(120)
def test_slice_all_needs_slices_and_an_evaluated_metric(tmp_path: Path) -> None:
    from mlops_ci.errors import ConfigError

    config, _, _ = grouped_project(tmp_path, NOT_WORSE + ", slice: all}")
    text = config.path.read_text()
    config.path.write_text(
        text.replace(" slices: [group]", "").replace("accuracy, must", "f1, must")
    )
    with pytest.raises(ConfigError) as err:
        load_config(tmp_path)
    joined = "\n".join(err.value.problems)
    assert "slice: all needs a metric of evaluate.metrics" in joined
    assert "evaluate.slices names no column" in joined
