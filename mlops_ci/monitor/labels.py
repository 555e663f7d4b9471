"""Labels that arrive later: the true answers of requests `mlops-ci serve` scored, read from
CSV, Parquet or JSON Lines files (a file, or a folder of them).

Each label names the request it belongs to (``request_id``, as the input log and the
``x-request-id`` header carry it), optionally the row within that request (``row``, from 0),
and the true value in the column named by ``evaluate.target``. A label without a value (an
empty cell, ``null``) is counted, not used. Two labels for one (request, row) are refused with
both places named: which of them is true is the sender's to say, not ours to guess. Every
place is said as ``FILE:LINE`` (CSV, JSON Lines; the header is line 1 of a CSV) or
``FILE: table row N`` (Parquet, from 1).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from mlops_ci.errors import InputError
from mlops_ci.extras import require
from mlops_ci.monitor.files import files_of

REQUEST_ID = "request_id"
ROW = "row"


@dataclass
class LabelSet:
    """The labels read: (request_id, row or None) -> (value, place)."""

    target: str
    labels: dict[tuple[str, int | None], tuple[Any, str]] = field(default_factory=dict)
    empty: int = 0  # labels without a value: counted, not used
    files: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.labels)


def read_labels(path: Path, target: str, task: str) -> LabelSet:
    """Every label of ``path`` (a file or a folder of .csv/.parquet/.jsonl files); a regression
    target is read as a number. Bad input is an InputError naming the file and line."""
    found = LabelSet(target)
    for file in files_of(path):
        found.files.append(str(file))
        for place, record in _records(file, target):
            _add(found, place, record, task)
    return found


def _records(file: Path, target: str) -> Iterator[tuple[str, dict[str, Any]]]:
    if file.suffix == ".csv":
        yield from _csv(file, target)
    elif file.suffix == ".parquet":
        yield from _parquet(file, target)
    elif file.suffix == ".jsonl":
        yield from _jsonl(file, target)
    else:
        raise InputError(f"{file}: labels must be a .csv, .parquet or .jsonl file")


def _missing_column(file: Path, column: str, where: str = "") -> InputError:
    what = "evaluate.target" if column not in (REQUEST_ID, ROW) else "the request it labels"
    return InputError(
        f"{file}{where}: no column '{column}' ({what})",
        hint=f"a label file has the columns {REQUEST_ID}, optional {ROW}, and the target",
    )


def _check_columns(file: Path, columns: list[str], target: str) -> None:
    for column in (REQUEST_ID, target):
        if column not in columns:
            raise _missing_column(file, column)


def _csv(file: Path, target: str) -> Iterator[tuple[str, dict[str, Any]]]:
    import pandas as pd

    try:  # text as written: "1" stays "1" (as the log's 1 reads), an empty cell stays empty
        frame = pd.read_csv(file, dtype=str, keep_default_na=False)
    except pd.errors.EmptyDataError:
        raise InputError(f"{file}: empty, not even a header line") from None
    except (ValueError, OSError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise InputError(f"{file}: cannot be read as CSV: {first}") from None
    _check_columns(file, [str(c) for c in frame.columns], target)
    wanted = [c for c in (REQUEST_ID, ROW, target) if c in frame.columns]
    for number, values in enumerate(frame[wanted].itertuples(index=False, name=None), 2):
        yield f"{file}:{number}", dict(zip(wanted, values, strict=True))


def _parquet(file: Path, target: str) -> Iterator[tuple[str, dict[str, Any]]]:
    require("parquet", f"{file}: reading Parquet")
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(file)
    except (OSError, ValueError) as err:
        raise InputError(f"{file}: cannot be read as Parquet: {err}") from None
    _check_columns(file, table.column_names, target)
    wanted = [c for c in (REQUEST_ID, ROW, target) if c in table.column_names]
    for number, record in enumerate(table.select(wanted).to_pylist(), 1):
        yield f"{file}: table row {number}", record


def _jsonl(file: Path, target: str) -> Iterator[tuple[str, dict[str, Any]]]:
    try:
        lines = file.read_bytes().splitlines()
    except OSError as err:
        raise InputError(f"{file}: cannot be read: {err.strerror or err}") from None
    for number, line in enumerate(lines, 1):
        if line.strip():
            yield f"{file}:{number}", _object(line, file, f":{number}", target)


def _object(line: bytes, file: Path, where: str, target: str) -> dict[str, Any]:
    """One JSON line as a label record: an object with the request id and the target."""
    try:
        record = orjson.loads(line)
    except orjson.JSONDecodeError as err:
        raise InputError(f"{file}{where}: not a JSON object: {err}") from None
    if not isinstance(record, dict):
        raise InputError(f"{file}{where}: not a JSON object")
    for column in (REQUEST_ID, target):
        if column not in record:
            raise _missing_column(file, column, where)
    return record


def _add(found: LabelSet, place: str, record: dict[str, Any], task: str) -> None:
    request = record.get(REQUEST_ID)
    if _blank(request) or isinstance(request, (dict, list, bool)):
        raise InputError(f"{place}: {REQUEST_ID} is empty or not a text")
    row = _row(record.get(ROW), place)
    value = record.get(found.target)
    if _blank(value):
        found.empty += 1
        return
    key = (str(request), row)
    if key in found.labels:
        raise duplicate(key, place, found.labels[key][1])
    found.labels[key] = (_value(value, task, place, found.target), place)


def duplicate(key: tuple[str, int | None], place: str, first: str) -> InputError:
    """The error of a second label for one (request, row)."""
    row = "" if key[1] is None else f" row {key[1]}"
    return InputError(
        f"{place}: a second label for request '{key[0]}'{row} (the first is at {first})",
        hint="send one label per request and row; correct or remove the wrong one",
    )


def _blank(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    return isinstance(value, str) and not value.strip()


def _row(value: Any, place: str) -> int | None:
    """The row within its request: a whole number from 0, or None when not given."""
    if _blank(value):
        return None
    if isinstance(value, bool):
        raise InputError(f"{place}: {ROW} must be a whole number from 0, not {value}")
    try:
        number = float(value) if not isinstance(value, int) else value
    except (TypeError, ValueError):
        raise InputError(f"{place}: {ROW} must be a whole number from 0, not '{value}'") from None
    if isinstance(number, float) and not number.is_integer() or number < 0:
        raise InputError(f"{place}: {ROW} must be a whole number from 0, not '{value}'")
    return int(number)


def _value(value: Any, task: str, place: str, target: str) -> Any:
    """A regression target as a number; a class as given (compared as text, as compare does)."""
    if isinstance(value, (dict, list)):
        raise InputError(f"{place}: {target} must be one value, not {type(value).__name__}")
    if task != "regression":
        return value
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{place}: {target} must be a number (model.task: regression)") from None
    if not math.isfinite(number):
        raise InputError(f"{place}: {target} must be a finite number, not {value}")
    return number
