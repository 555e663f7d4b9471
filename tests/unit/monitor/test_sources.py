"""Reading Parquet without pyarrow names the file and the extra."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlops_ci.errors import MlopsError
from mlops_ci.extras import install_hint
from mlops_ci.monitor.sources import chunks
from tests.support.extras import hide


@pytest.mark.timeout(60)
def test_reading_parquet_without_pyarrow_names_the_file_and_the_extra(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    table = tmp_path / "reference.parquet"
    table.write_bytes(b"PAR1")
    hide(monkeypatch, "pyarrow", "pyarrow.parquet")
    with pytest.raises(MlopsError) as caught:
        next(chunks(table, 100))
    assert str(caught.value) == f"{table}: reading Parquet needs pyarrow (the parquet extra)"
    assert caught.value.hint == install_hint("parquet")
