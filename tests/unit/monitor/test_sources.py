"""Reading Parquet without pyarrow names the file and the extra; a live input-log folder read
while serve rotates its segments holds each row once; a shadow version's records are left out."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from mlops_ci.errors import MlopsError
from mlops_ci.extras import install_hint
from mlops_ci.monitor.sources import PREDICTION, chunks
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


@pytest.mark.timeout(60)
def test_a_shadow_versions_records_are_left_out(tmp_path: Path) -> None:
    """serve logs a shadow version's answer to a request beside the primary's ("shadow":
    true): drift counts each row's inputs once, with the serving version's prediction."""
    import orjson
    import pyarrow as pa
    import pyarrow.parquet as pq

    def logged(version: str, row: int, prediction: int, shadow: bool | None) -> dict[str, Any]:
        record: dict[str, Any] = {"ts": 1, "request_id": "r", "row": row, "version": version}
        record.update(inputs={"a": float(row)}, prediction=prediction)
        return record if shadow is None else {**record, "shadow": shadow}

    records = [logged("1", 0, 0, None), logged("2", 0, 1, True), logged("1", 1, 0, False),
               logged("2", 1, 1, True), logged("1", 2, 0, None)]  # fmt: skip
    (tmp_path / "inputs-20260101T000000-1-0001.jsonl").write_bytes(
        b"".join(orjson.dumps(r) + b"\n" for r in records)
    )
    frames = list(chunks(tmp_path, 2))
    assert [list(f["a"]) for f in frames] == [[0.0, 1.0], [2.0]]  # chunks of primaries only
    assert [p for f in frames for p in f[PREDICTION]] == [0, 0, 0]
    columns = {k: [r.get(k) for r in records] for k in dict.fromkeys(k for r in records for k in r)}
    pq.write_table(pa.Table.from_pydict(columns), tmp_path / "inputs.parquet")
    from_parquet = list(chunks(tmp_path / "inputs.parquet", 100))
    assert [list(f["a"]) for f in from_parquet] == [[0.0, 1.0, 2.0]]
    assert list(from_parquet[0][PREDICTION]) == [0, 0, 0]
    only_shadows = [r for r in records if r.get("shadow")]
    pq.write_table(pa.Table.from_pylist(only_shadows), tmp_path / "shadows.parquet")
    assert list(chunks(tmp_path / "shadows.parquet", 100)) == []  # no frame without rows
    plain = tmp_path / "plain" / "table.jsonl"  # a JSON-lines table, not a log: kept whole
    plain.parent.mkdir()
    plain.write_bytes(b'{"a": 1.0, "shadow": true}\n{"a": 2.0, "shadow": false}\n')
    assert list(next(chunks(plain, 10))["a"]) == [1.0, 2.0]
