"""A batch job cut into tasks that any process can run alone: (file, slice) pairs.

A CSV file is cut at line starts every ``chunk_rows`` rows (found by one binary scan for
newlines: quoted fields holding newlines are not supported); a Parquet file by row group, and a
row group larger than ``chunk_rows`` into row ranges. A task reads only its own slice, so
workers never receive data through the driver, and the same input always gives the same tasks:
that is what makes a job resumable.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mlops_ci.datafiles import files_of
from mlops_ci.errors import InputError

SCAN_BLOCK = 8 * 1024 * 1024
NEWLINE = ord("\n")


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
        for offset in range(0, rows, chunk_rows):
            n = min(chunk_rows, rows - offset)
            tasks.append(Task(first + len(tasks), str(file), "parquet", group, -1, offset, n))
    return tasks


@dataclass(frozen=True)
class Slice:
    table: Any  # pyarrow.Table
    malformed: list[tuple[list[str], str]]  # CSV rows that did not parse: (fields, error)


def read_task(task: Task) -> Slice:
    """The task's rows as an Arrow table (CSV values as strings, so nothing is lost), read in
    this thread alone: the engine gives each process one task at a time, one core each."""
    if task.kind == "csv":
        return _read_csv(task)
    import pyarrow.parquet as pq

    group = pq.ParquetFile(task.file).read_row_group(task.start, use_threads=False)
    return Slice(group.slice(task.offset, task.rows), [])


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
