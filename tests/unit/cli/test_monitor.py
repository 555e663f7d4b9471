"""batch-score without the batch extra names it, as one line and exit 2."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlops_ci.extras import install_hint, missing
from tests.support.extras import hide
from tests.support.helpers import run_cli


@pytest.mark.timeout(60)
def test_batch_score_without_the_batch_extra_names_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    hide(monkeypatch, "pyarrow")
    assert missing("batch") == ["pyarrow"]
    data = tmp_path / "in.csv"
    data.write_text("a\n1\n")
    code = run_cli(
        "batch-score", "--model-dir", str(tmp_path), "--input", str(data), "--output",
        str(tmp_path / "out.parquet"),
    )  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2, err
    assert "error: mlops-ci batch-score needs pyarrow (the batch extra)" in err
    assert f"hint: {install_hint('batch')}" in err
    assert "Traceback" not in err
