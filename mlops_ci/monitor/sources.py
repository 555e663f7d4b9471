"""Tables read in chunks: CSV, Parquet, and the input log `mlops-ci serve` writes.

Everything yields pandas DataFrames of at most ``chunk_rows`` rows, so a reader of millions of
rows holds one chunk at a time. A path may be a file or a folder of files; an input-log folder
(``inputs-*.jsonl`` / ``inputs-*.parquet``) yields its rows' ``inputs`` as columns and the
logged prediction as ``PREDICTION``; the segment a running server still appends to is read up
to its last complete line, so drift sees every row already on disk. A JSON line that is not a
JSON object (torn by a killed writer or a full disk) is skipped and counted (``lines.py``).
A record a shadow version wrote (``"shadow": true``: a second model scoring the same request)
is left out: each row's inputs count once, and the predictions read are the serving version's.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mlops_ci.errors import InputError
from mlops_ci.extras import require
from mlops_ci.monitor.files import OPEN_SEGMENT, files_of, successors
from mlops_ci.monitor.lines import SkippedLines, json_lines

PREDICTION = "__prediction__"


def chunks(
    path: Path, chunk_rows: int, skipped: SkippedLines | None = None
) -> Iterator[pd.DataFrame]:
    """The rows of ``path`` in frames; JSON lines that are not objects are counted in
    ``skipped`` (a caller that reports them passes one)."""
    skipped = SkippedLines() if skipped is None else skipped
    for listed in files_of(path):
        file = _current(listed)
        if file is None:
            continue  # an empty segment serve removed since the folder was listed
        try:
            if file.suffix == ".csv":
                yield from pd.read_csv(file, chunksize=chunk_rows)
            elif file.suffix == ".parquet":
                yield from _parquet(file, chunk_rows)
            else:  # .jsonl, or a segment serve is still writing: its complete lines
                yield from _jsonl(file, chunk_rows, skipped, file.name.endswith(OPEN_SEGMENT))
        except (ValueError, OSError) as err:
            if isinstance(err, InputError):
                raise
            first = str(err).splitlines()[0] if str(err) else type(err).__name__
            raise InputError(f"{file}: cannot be read as a table: {first}") from None


def _current(file: Path) -> Path | None:
    """``file``, or what serve finished it into since the folder was listed (reading the files
    before it can take a while, and the open segment rotates meanwhile); None when it is gone
    without one."""
    if file.exists():
        return file
    for name in successors(file.name):
        if file.with_name(name).exists():
            return file.with_name(name)
    return None if successors(file.name) else file  # not a log file: its error says so


def _parquet(file: Path, chunk_rows: int) -> Iterator[pd.DataFrame]:
    require("parquet", f"{file}: reading Parquet")
    import pyarrow.parquet as pq

    for batch in pq.ParquetFile(file).iter_batches(batch_size=chunk_rows):
        frame = batch.to_pandas()
        if "inputs" not in frame.columns:
            yield frame
            continue
        if "shadow" in frame.columns:
            frame = frame[~frame["shadow"].map(_is_true)]
        if len(frame):
            yield _flatten_log(frame)


def _jsonl(
    file: Path, chunk_rows: int, skipped: SkippedLines, complete_only: bool
) -> Iterator[pd.DataFrame]:
    rows: list[Any] = []
    for record in json_lines(file, skipped, complete_only):
        if _is_true(record.get("shadow")) and isinstance(record.get("inputs"), dict):
            continue  # a shadow version's record of a row the serving version logged too
        rows.append(record)
        if len(rows) >= chunk_rows:
            yield _log_frame(rows)
            rows = []
    if rows:
        yield _log_frame(rows)


def _log_frame(rows: list[Any]) -> pd.DataFrame:
    """Input-log records (or plain JSON objects) as a frame of features (+ prediction)."""
    if rows and isinstance(rows[0], dict) and isinstance(rows[0].get("inputs"), dict):
        frame = pd.DataFrame.from_records([r["inputs"] for r in rows])
        frame[PREDICTION] = [r.get("prediction") for r in rows]
        return frame
    return pd.DataFrame.from_records(rows)


def _flatten_log(frame: pd.DataFrame) -> pd.DataFrame:
    out = pd.DataFrame.from_records(list(frame["inputs"]))
    if "prediction" in frame.columns:
        out[PREDICTION] = frame["prediction"].to_numpy()
    return out


def _is_true(value: Any) -> bool:
    """A record's ``shadow`` flag: only ``true`` is a shadow's (absent, null, false are not)."""
    return value is True or (isinstance(value, np.bool_) and bool(value))
