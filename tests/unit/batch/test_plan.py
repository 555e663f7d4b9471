"""batch-score's plan: CSV and Parquet cut into tasks, a CSV task's slice and its bad rows."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from mlops_ci.batch.plan import MIN_CHUNK_ROWS, auto_chunk_rows, plan, read_task
from mlops_ci.errors import InputError


def test_a_csv_task_keeps_good_rows_and_hands_back_the_rows_that_did_not_parse(
    tmp_path: Path,
) -> None:
    source = tmp_path / "rows.csv"
    source.write_text("id,x,y\nr1,1,2\nr2,3\nr3,5,6\nr4,7,8,9\nr5,,10\n")
    tasks = plan(source, chunk_rows=100)
    assert [(t.kind, t.rows) for t in tasks] == [("csv", 5)]
    data = read_task(tasks[0])
    assert data.table.column_names == ["id", "x", "y"]
    assert data.table.column("id").to_pylist() == ["r1", "r3", "r5"]
    assert data.table.column("x").to_pylist() == ["1", "5", ""]  # text, kept as written
    assert data.malformed == [
        (["r2", "3", ""], "malformed CSV row: 2 fields, the header has 3"),
        (["r4", "7", "8"], "malformed CSV row: 4 fields, the header has 3"),
    ]


@pytest.mark.parametrize("block", [7, 64, 8 * 1024 * 1024])
@pytest.mark.parametrize("chunk_rows", [1, 3, 50, 1000])
def test_csv_cuts_fall_on_line_starts_every_chunk_rows_across_scan_blocks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, block: int, chunk_rows: int
) -> None:
    import mlops_ci.batch.plan as plan_module

    monkeypatch.setattr(plan_module, "SCAN_BLOCK", block)
    for n, final_newline in ((0, True), (1, False), (149, True), (150, False), (151, True)):
        file = tmp_path / f"t{n}.csv"
        body = "".join(f"{i},{i * 7 % 13}\n" for i in range(n))
        file.write_bytes(("a,b\n" + (body if final_newline else body.rstrip("\n"))).encode())
        data = file.read_bytes()
        if n == 0:
            with pytest.raises(InputError):
                plan(file, chunk_rows)
            continue
        tasks = plan(file, chunk_rows)
        assert tasks[0].start == len(b"a,b\n") and tasks[-1].end == len(data)
        assert all(a.end == b.start for a, b in zip(tasks, tasks[1:], strict=False))
        assert [t.rows for t in tasks[:-1]] == [chunk_rows] * (len(tasks) - 1)
        assert sum(t.rows for t in tasks) == n
        for t in tasks:  # each slice holds exactly its rows, whole lines
            text = data[t.start : t.end].decode()
            assert len(text.splitlines()) == t.rows and (t is tasks[-1] or text.endswith("\n"))


def test_the_default_cut_makes_several_tasks_per_worker_and_splits_row_groups_evenly(
    tmp_path: Path,
) -> None:
    # 300,000 rows in three row groups were three tasks: two workers could not beat two tasks'
    # time. The default gives each worker eight, a group cut into equal ranges.
    import pyarrow.parquet as pq

    source = tmp_path / "rows.parquet"
    pq.write_table(pa.table({"x": np.arange(300_000, dtype=np.float64)}), source, 100_000)
    assert auto_chunk_rows(source, 2) == 18_750 and auto_chunk_rows(source, 1) == 37_500
    tasks = plan(source, auto_chunk_rows(source, 2))
    assert len(tasks) == 18 and {t.rows for t in tasks} <= {16_666, 16_667}
    for group in range(3):
        ranges = [(t.offset, t.offset + t.rows) for t in tasks if t.start == group]
        assert ranges[0][0] == 0 and ranges[-1][1] == 100_000
        # no gap, no overlap
        assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:], strict=False))
    values = np.concatenate([read_task(t).table.column("x").to_numpy() for t in tasks])
    assert values.tolist() == list(range(300_000))
    # a small input is not cut below the size where a task's fixed costs weigh
    small = tmp_path / "small.csv"
    small.write_text("x\n" + "".join(f"{i}\n" for i in range(5000)))
    assert auto_chunk_rows(small, 4) == MIN_CHUNK_ROWS and len(plan(small, MIN_CHUNK_ROWS)) == 1


def test_a_csv_row_count_is_estimated_from_its_size_without_a_scan(tmp_path: Path) -> None:
    source = tmp_path / "rows.csv"
    source.write_text("a,b\n" + "".join(f"{i},{i % 7}.5\n" for i in range(400_000)))
    wanted = 400_000 / (8 * 2)
    assert abs(auto_chunk_rows(source, 2) - wanted) / wanted < 0.1
