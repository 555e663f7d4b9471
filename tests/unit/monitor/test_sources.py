"""Reading Parquet without pyarrow names the file and the extra; a live input-log folder read
while serve rotates its segments holds each row once."""

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


def _records(rows: int, value: float) -> list[dict[str, object]]:
    record = {"ts": 1, "request_id": "r", "model": "m", "version": "1",
              "inputs": {"a": value}, "prediction": 0, "scores": [0.5]}  # fmt: skip
    return [record] * rows


@pytest.mark.timeout(60)
def test_a_segment_serve_finishes_while_the_folder_is_read_is_read_once(tmp_path: Path) -> None:
    """drift lists the log folder, then reads file after file; meanwhile serve renames the
    open segment to .jsonl (it failed: 'cannot be read as a table') or converts a .jsonl to
    .parquet (listed under both names, its rows were read twice)."""
    import orjson
    import pyarrow as pa
    import pyarrow.parquet as pq

    def jsonl(name: str, rows: int, value: float) -> Path:
        path = tmp_path / name
        path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in _records(rows, value)))
        return path

    jsonl("inputs-20260101T000000-1-0001.jsonl", 2, 1.0)
    both = jsonl("inputs-20260101T000000-1-0002.jsonl", 3, 2.0)
    pq.write_table(pa.Table.from_pylist(_records(3, 2.0)), both.with_suffix(".parquet"))
    live = jsonl("inputs-20260101T000000-1-0003.jsonl.open", 4, 3.0)
    seen: list[float] = []
    for frame in chunks(tmp_path, 100):
        seen += list(frame["a"])
        if live.exists():  # serve rotates right after drift read its first file
            live.rename(tmp_path / "inputs-20260101T000000-1-0003.jsonl")
    assert seen == [1.0] * 2 + [2.0] * 3 + [3.0] * 4
