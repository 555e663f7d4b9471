"""A batch job cut into tasks that any process can run alone: (file, slice) pairs.

A CSV file is cut at line starts every ``chunk_rows`` rows (found by one binary scan for
newlines: quoted fields holding newlines are not supported); a Parquet file by row group, and a
row group larger than ``chunk_rows`` into equal row ranges. Unless the user names a size,
``auto_chunk_rows`` makes several tasks per worker: 300,000 rows in three row groups were three
tasks, and two workers could not finish them in less than two tasks' time. A task reads only
its own slice, so workers never receive data through the driver, and the same input and cut
always give the same tasks: that is what makes a job resumable.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import threading
from dataclasses import asdict, dataclass
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np

from mlops_ci.errors import InputError
from mlops_ci.monitor.files import files_of

SCAN_BLOCK = 8 * 1024 * 1024
NEWLINE = ord("\n")
MAX_CHUNK_ROWS = 100_000  # the unit of memory per task
MIN_CHUNK_ROWS = 10_000  # below this a task's fixed costs (a part file, a read) weigh
SAMPLE = 1 << 16  # bytes read at three places of a CSV file to estimate its rows
TASKS_PER_WORKER = 8  # enough that the last tasks even out between workers


@dataclass(frozen=True)
class Task:
    index: int
    file: str
    kind: str  # csv | parquet
    start: int  # csv: byte offset of the first row; parquet: row group
    end: int  # csv: byte offset after the last row; parquet: -1
    offset: int  # parquet: first row within the row group
    rows: int  # rows in the slice (csv: lines; parquet: exact)


def plan(path: Path, chunk_rows: int) -> list[Task]:
    tasks: list[Task] = []
    for file in files_of(path):
        if file.suffix == ".csv":
            tasks += _csv_tasks(file, chunk_rows, len(tasks))
        elif file.suffix == ".parquet":
            tasks += _parquet_tasks(file, chunk_rows, len(tasks))
        else:
            raise InputError(f"{file}: batch-score reads .csv and .parquet files")
    if not tasks:
        raise InputError(f"{path}: no rows to score")
    return tasks


def auto_chunk_rows(path: Path, workers: int) -> int:
    """Rows per task when the user gave none: ``TASKS_PER_WORKER`` tasks per worker, within
    ``MIN_CHUNK_ROWS`` and ``MAX_CHUNK_ROWS``. Rows are counted from Parquet footers and
    estimated for CSV from the file size and the lines in 64 KiB read at its start, middle
    and end (no scan)."""
    rows = sum(_rows_about(file) for file in files_of(path))
    wanted = -(-rows // (TASKS_PER_WORKER * max(1, workers)))
    return max(MIN_CHUNK_ROWS, min(MAX_CHUNK_ROWS, wanted))


def _rows_about(file: Path) -> int:
    if file.suffix == ".parquet":
        import pyarrow.parquet as pq

        return int(pq.ParquetFile(file).metadata.num_rows)
    size = file.stat().st_size
    sampled = newlines = 0
    with open(file, "rb") as fh:  # 64 KiB at the start, the middle and the end
        for at in sorted({0, max(0, size // 2 - SAMPLE // 2), max(0, size - SAMPLE)}):
            fh.seek(at)
            block = fh.read(SAMPLE)
            sampled, newlines = sampled + len(block), newlines + block.count(b"\n")
            if size <= SAMPLE:
                break
    return int(size * newlines / sampled) - 1 if newlines else 0  # less the header


def signature(tasks: list[Task], extra: dict[str, str]) -> str:
    """Identifies a job: its inputs (size, mtime), cuts and model; resuming needs the same."""
    stats = {t.file: (Path(t.file).stat().st_size, Path(t.file).stat().st_mtime_ns) for t in tasks}
    text = json.dumps(
        {"tasks": [asdict(t) for t in tasks], "stats": stats, **extra}, sort_keys=True
    )
    return hashlib.sha256(text.encode()).hexdigest()


def _csv_tasks(file: Path, chunk_rows: int, first: int) -> list[Task]:
    """Byte ranges of every ``chunk_rows`` data lines (after the header)."""
    tasks: list[Task] = []
    size = file.stat().st_size
    with open(file, "rb") as fh:
        header = fh.readline()
        chunk_start = len(header)
        position = chunk_start
        lines = 0
        while block := fh.read(SCAN_BLOCK):
            count = block.count(b"\n")  # in C; most blocks hold no cut
            if lines + count < chunk_rows:
                lines += count
                position += len(block)
                continue
            newlines = np.flatnonzero(np.frombuffer(block, np.uint8) == NEWLINE)
            for at in newlines[chunk_rows - lines - 1 :: chunk_rows].tolist():
                end = position + at + 1
                tasks.append(
                    Task(first + len(tasks), str(file), "csv", chunk_start, end, 0, chunk_rows)
                )
                chunk_start = end
            lines = (count - (chunk_rows - lines)) % chunk_rows
            position += len(block)
        if chunk_start < size:  # the last chunk, perhaps without a final newline
            fh.seek(size - 1)
            unterminated = fh.read(1) != b"\n"
            rows = lines + int(unterminated)
            if rows:
                tasks.append(Task(first + len(tasks), str(file), "csv", chunk_start, size, 0, rows))
    return tasks


def _parquet_tasks(file: Path, chunk_rows: int, first: int) -> list[Task]:
    import pyarrow.parquet as pq

    meta = pq.ParquetFile(file).metadata
    tasks: list[Task] = []
    for group in range(meta.num_row_groups):
        rows = meta.row_group(group).num_rows
        pieces = max(1, -(-rows // chunk_rows))  # equal ranges, none larger than chunk_rows
        cuts = [rows * i // pieces for i in range(pieces + 1)]
        for offset, end in pairwise(cuts):
            n = end - offset
            tasks.append(Task(first + len(tasks), str(file), "parquet", group, -1, offset, n))
    return tasks


@dataclass(frozen=True)
class Slice:
    table: Any  # pyarrow.Table
    malformed: list[tuple[list[str], str]]  # CSV rows that did not parse: (fields, error)


def read_task(task: Task) -> Slice:
    """The task's rows as an Arrow table (CSV values as strings, so nothing is lost), read in
    this thread alone: the engine gives each worker one task at a time, one core each."""
    if task.kind == "csv":
        return _read_csv(task)
    group = _row_group(task.file, task.start, os.stat(task.file).st_mtime_ns)
    return Slice(group.slice(task.offset, task.rows), [])


def forget_reads() -> None:
    """Drop the row groups kept by ``read_task`` (the calling process keeps none after a job)."""
    _GROUPS.clear()


_GROUPS: dict[int, tuple[tuple[str, int, int], Any]] = {}  # thread -> its last row group


def _row_group(file: str, group: int, mtime_ns: int) -> Any:
    """The last row group this thread read: a group cut into several tasks is read once by
    a worker that runs more than one of them (tasks go out in order, so it often does). One
    kept per worker thread, so the local engine's workers do not evict each other's."""
    import pyarrow.parquet as pq

    key = (file, group, mtime_ns)
    kept = _GROUPS.get(threading.get_ident())
    if kept is not None and kept[0] == key:
        return kept[1]
    _GROUPS.pop(threading.get_ident(), None)  # freed before the next is read
    table = pq.ParquetFile(file).read_row_group(group, use_threads=False)
    _GROUPS[threading.get_ident()] = (key, table)
    return table


def _read_csv(task: Task) -> Slice:
    import pyarrow as pa
    import pyarrow.csv as pacsv

    with open(task.file, "rb") as fh:
        header = fh.readline()
        fh.seek(task.start)
        body = fh.read(task.end - task.start)
    serial = pacsv.ReadOptions(use_threads=False)
    names = pacsv.read_csv(io.BytesIO(header), read_options=serial).column_names
    malformed: list[tuple[list[str], str]] = []

    def skip(row: Any) -> str:
        fields = next(csv.reader([row.text]), [])
        fields = (fields + [""] * len(names))[: len(names)]
        error = f"malformed CSV row: {row.actual_columns} fields, the header has {len(names)}"
        malformed.append((fields, error))
        return "skip"

    try:
        table = pacsv.read_csv(
            io.BytesIO(header + body),
            read_options=serial,
            parse_options=pacsv.ParseOptions(invalid_row_handler=skip),
            convert_options=pacsv.ConvertOptions(
                column_types={name: pa.string() for name in names},
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
            ),
        )
    except pa.ArrowInvalid as err:  # e.g. bytes that are not UTF-8
        raise InputError(
            f"{task.file}: cannot be read as CSV: {str(err).splitlines()[0]}"
        ) from None
    return Slice(table, malformed)
