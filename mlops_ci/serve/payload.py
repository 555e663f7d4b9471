"""Request bodies → a checked float64 matrix (values as sent, in the float32 range), or a 4xx.

Pure functions, no web framework: the service calls them and turns ``PayloadError`` into a JSON
error body. Accepted shapes:

- ``/score``: ``{"inputs": [[...], ...]}`` (rows in feature order) or ``{"inputs": [{col: v}]}``
  (records by column name); MLflow's ``dataframe_split`` / ``dataframe_records`` and Azure ML's
  ``data`` / ``input_data`` spellings too.
- Open Inference Protocol v2 ``/infer``: one input tensor ``{"name", "shape": [rows, features],
  "datatype", "data"}`` (all-numeric models), or one tensor per column named like it, shape
  [rows] or [rows, 1], BYTES for text columns; ``data`` flat or nested, or raw bytes after the
  JSON header (the binary tensor extension tritonclient uses, ``Inference-Header-Content-Length``).
  Those are parsed in ``v2payload``, with the checks of a value kept here.

A model whose schema is all numbers (a bool is one: 1.0/0.0) gets a float64 matrix; one with
text or category columns a table of 1-D columns by name (float64 numbers and bools, object
strings and category values; a missing value as ``model/features.py`` says). What a bool or a
category takes, and the words of a refusal, are ``model/values.py``'s, as on every other path.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson

from mlops_ci.model.features import BOOL, CATEGORY, STRING, Feature, FeatureSchema
from mlops_ci.model.tensors import TensorSchema
from mlops_ci.model.values import bool_value, parse, refusal

# v2 datatypes that can stand for a feature value, and their numpy types for binary data.
V2_NUMERIC = {
    "BOOL": np.bool_,
    "UINT8": np.uint8,
    "UINT16": np.uint16,
    "UINT32": np.uint32,
    "UINT64": np.uint64,
    "INT8": np.int8,
    "INT16": np.int16,
    "INT32": np.int32,
    "INT64": np.int64,
    "FP16": np.float16,
    "FP32": np.float32,
    "FP64": np.float64,
}
FLOAT32_MAX = float(np.finfo(np.float32).max)
# The /score body spellings: ours and KServe v2's "inputs", MLflow's, Azure ML's.
SCORE_KEYS = ("inputs", "dataframe_records", "data", "dataframe_split", "input_data")
SMALL_BATCH = 256  # values: up to this many are checked in Python, more with numpy


class PayloadError(Exception):
    """A request the service refuses: ``status`` is the 4xx code, ``str`` names the problem."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def echoed(value: str, limit: int = 64) -> str:
    """A value from the request as an error message quotes it: cut, so an answer never
    echoes a header or path of any size back."""
    return value if len(value) <= limit else f"{value[:limit]}… ({len(value):,} characters)"


Batch = npt.NDArray[np.float64] | dict[str, npt.NDArray[Any]]


@dataclass(frozen=True)
class Limits:
    n_features: int
    features: tuple[str, ...]  # column names, when the package recorded them
    max_rows: int
    schema: FeatureSchema | None = None  # their kinds; None: all numbers
    tensors: TensorSchema | None = None  # a tensor model's inputs (serve/tensorbody.py)

    @cached_property
    def mixed(self) -> bool:
        """Some column is text: requests become tables, not one float matrix."""
        return self.schema is not None and not self.schema.all_numeric

    @cached_property
    def booleans(self) -> frozenset[int]:
        """Positions of the bool columns (true/false, taken as 1.0/0.0)."""
        return frozenset(self.schema.booleans) if self.schema is not None else frozenset()

    @cached_property
    def nullable(self) -> tuple[int, ...]:
        """Positions of the number columns the model scores when missing (null / NaN)."""
        if self.schema is None:
            return ()
        return tuple(j for j, f in enumerate(self.schema.features) if f.nullable)


@dataclass(frozen=True)
class InferRequest:
    """A parsed v2 request: the batch, the request id and which outputs were asked for."""

    x: Batch
    id: str | None
    outputs: tuple[str, ...]


def batch_rows(x: Batch) -> int:
    if isinstance(x, dict):
        return len(next(iter(x.values()))) if x else 0
    return len(x)


def parse_json(body: bytes) -> Any:
    """Every JSON body the service reads (``/score``, v2, the admin API): its nesting checked
    before any parser sees it, its integers beyond float32 refused exactly."""
    if not body:
        raise PayloadError(400, "empty request body: send a JSON object")
    check_depth(body)
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as err:
        raise PayloadError(400, f"invalid JSON: {err}") from None
    if body.translate(_DIGITS_AS_ZERO).find(_39_DIGITS) >= 0:  # in C: a regex took 15 µs/KB
        _check_long_integers(body)
    return doc


# A request nests 5 levels at most (a v2 tensor's nested data in an object in a list in the
# body); deeper is refused before parsing: a parser or a walk that recurses never sees it.
MAX_JSON_DEPTH = 32
_STRUCTURE = bytes(range(256)).translate(None, b'"[]{}')  # every byte but these five
_OPEN = np.zeros(256, dtype=np.int8)
_OPEN[[ord("["), ord("{")]] = 1
_OPEN[[ord("]"), ord("}")]] = -1


def check_depth(body: bytes) -> None:
    """Refuse JSON nested deeper than ``MAX_JSON_DEPTH``: one linear pass over the bytes,
    counting ``[`` and ``{`` outside strings (escapes honoured), in C and numpy, no recursion.

    Exact for valid JSON; for invalid JSON the parser's refusal follows anyway."""
    if body.count(b"[") + body.count(b"{") <= MAX_JSON_DEPTH:
        return  # a single-row request: no deeper than it has brackets
    marks = _unescaped(body).translate(None, _STRUCTURE)  # only " [ ] { } are left
    codes = np.frombuffer(marks, dtype=np.uint8)
    step = _OPEN[codes]
    quotes = codes == ord('"')
    if quotes.any():
        step[np.cumsum(quotes) % 2 == 1] = 0  # inside a string (and its opening quote)
    if int(np.cumsum(step, dtype=np.int64).max()) > MAX_JSON_DEPTH:
        raise PayloadError(
            400,
            f"the JSON body is nested deeper than {MAX_JSON_DEPTH} levels (the limit); "
            "a request needs 5 at most",
        )


# orjson reads an integer beyond 64 bits as a float64, and one just past the float32 range
# rounds onto its edge; 39+ digits (>= 1e38) are read again exactly from the body's text,
# rarely, to refuse those.
_DIGITS_AS_ZERO = bytes.maketrans(b"123456789", b"000000000")
_39_DIGITS = b"0" * 39
_STRING = re.compile(rb'"[^"]*"')  # once escapes are gone, a string holds no quote
_LONG_INTEGER = re.compile(rb"(?<![\w.+-])-?\d{39,}(?![\w.])")  # not a float's part


def _unescaped(body: bytes) -> bytes:
    """``body`` without its escapes, so the quotes left delimit strings: an escape is a
    backslash and the byte after it; pairs go first (left to right, as a string is read),
    then an escaped quote."""
    if b"\\" not in body:
        return body
    return body.replace(b"\\\\", b"").replace(b'\\"', b"")


def _check_long_integers(body: bytes) -> None:
    """Integers of 39+ digits outside strings, compared exactly with the float32 range: a
    scan of the text (no second parse, no recursion), after ``parse_json`` parsed it."""
    for found in _LONG_INTEGER.finditer(_STRING.sub(b'""', _unescaped(body))):
        digits = found.group()
        # JSON has no leading zeros: 40 digits or more are >= 1e39, past FLOAT32_MAX (3.4e38)
        if len(digits.lstrip(b"-")) > 39 or not -FLOAT32_MAX <= int(digits) <= FLOAT32_MAX:
            raise PayloadError(
                422, f"the number {digits[:12].decode()}... is beyond the float32 range"
            )


def parse_score(body: bytes, limits: Limits) -> Batch:
    """The ``/score`` body as a [rows, features] float32 matrix (or a table, see ``Batch``)."""
    doc = parse_json(body)
    if not isinstance(doc, dict):
        raise PayloadError(400, 'the body must be a JSON object such as {"inputs": [[...]]}')
    given = [key for key in SCORE_KEYS if key in doc]
    if len(given) > 1:
        raise PayloadError(400, f"send one of {', '.join(given)}, not {len(given)}")
    if "inputs" in doc:
        fast = _number_rows(doc["inputs"], body, limits)
        if fast is not None:
            return fast
        return _rows_or_records(doc["inputs"], "inputs", limits)
    if "dataframe_records" in doc:
        return _rows_or_records(doc["dataframe_records"], "dataframe_records", limits)
    if "data" in doc:
        return _rows_or_records(doc["data"], "data", limits)
    for key in ("dataframe_split", "input_data"):
        if key in doc:
            return _split(doc[key], key, limits)
    raise PayloadError(
        400,
        "missing field 'inputs': send {\"inputs\": [[f1, f2, ...], ...]} or "
        '{"inputs": [{"column": value, ...}]}',
    )


def _number_rows(rows: Any, body: bytes, limits: Limits) -> Batch | None:
    """Rows of plain numbers for an all-number model, converted by numpy in one call: or
    None, and the checks value by value say what is wrong. Plain: the body has no true,
    false or null anywhere (numpy would read a bool as 1), and numpy made a 2-D array of
    floats or integers (a string, an object, a ragged row or an integer past 64 bits is not)."""
    if (
        limits.mixed
        or limits.booleans
        or not isinstance(rows, list)
        or not rows
        or not isinstance(rows[0], list)
        or b"true" in body
        or b"false" in body
        or b"null" in body
    ):
        return None
    check_rows(len(rows), "inputs", limits)
    try:
        values = np.array(rows)
    except (ValueError, TypeError, OverflowError):
        return None
    if values.ndim != 2 or values.shape[1] != limits.n_features or values.dtype.kind not in "fi":
        return None
    values = values.astype(np.float64, copy=False)  # JSON numbers are finite: range only
    if values.size and (values.max() > FLOAT32_MAX or values.min() < -FLOAT32_MAX):
        raise PayloadError(422, "'inputs' holds a number beyond the float32 range")
    return values


def _rows_or_records(rows: Any, field: str, limits: Limits) -> Batch:
    if not isinstance(rows, list):
        raise PayloadError(400, f"'{field}' must be a list of rows, got {_kind(rows)}")
    check_rows(len(rows), field, limits)
    if isinstance(rows[0], dict):
        return _records(rows, field, limits)
    return _matrix(rows, field, limits)


def _split(value: Any, field: str, limits: Limits) -> Batch:
    if not isinstance(value, dict) or not isinstance(value.get("data"), list):
        raise PayloadError(400, f"'{field}' must be an object with 'columns' and 'data'")
    columns = value.get("columns")
    data = value["data"]
    if columns is None:
        return _rows_or_records(data, f"{field}.data", limits)
    if not isinstance(columns, list) or not all(isinstance(c, str) for c in columns):
        raise PayloadError(400, f"'{field}.columns' must be a list of column names")
    check_rows(len(data), f"{field}.data", limits)
    records = []
    for i, row in enumerate(data):
        if not isinstance(row, list) or len(row) != len(columns):
            raise PayloadError(
                422, f"'{field}.data[{i}]' must be a list of {len(columns)} values (one a column)"
            )
        records.append(dict(zip(columns, row, strict=True)))
    return _records(records, f"{field}.data", limits)


def _records(rows: list[Any], field: str, limits: Limits) -> Batch:
    if not limits.features:
        raise PayloadError(
            422,
            f"'{field}': this model's package records no feature names; send rows as lists "
            f"of {limits.n_features} numbers in feature order",
        )
    names = limits.features
    matrix = []
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise PayloadError(422, f"'{field}[{i}]' must be an object of column: value")
        missing = [n for n in names if n not in row]
        if missing:
            raise PayloadError(422, f"'{field}[{i}]': missing field(s) {', '.join(missing)}")
        extra = [str(k) for k in row if k not in names]
        if extra:
            raise PayloadError(422, f"'{field}[{i}]': unknown field(s) {', '.join(extra[:5])}")
        matrix.append([row[n] for n in names])
    return _matrix(matrix, field, limits, names)


def _matrix(rows: list[Any], field: str, limits: Limits, names: tuple[str, ...] = ()) -> Batch:
    if limits.mixed:
        return _table(rows, field, limits)
    width = limits.n_features
    _check_widths(rows, field, width, "numbers")
    # JSON numbers are finite (the parser refuses NaN, Infinity and overflow): what is left to
    # check is the float32 range, in this loop for a few values (numpy's fixed cost per call
    # is larger than theirs), by numpy for many.
    small = len(rows) * width <= SMALL_BATCH
    booleans = limits.booleans
    for i, row in enumerate(rows):
        for j, value in enumerate(row):
            kind = type(value)
            if booleans and j in booleans:  # a schema names the columns
                row[j] = _bool(value, limits.features[j], i, limits, j)
                continue
            if kind is float or kind is int:
                if small and not -FLOAT32_MAX <= value <= FLOAT32_MAX:
                    raise PayloadError(422, f"'{field}' holds a number beyond the float32 range")
                continue
            if value is None and j in limits.nullable:
                continue  # missing: the model imputes it
            where = names[j] if names else f"{field}[{i}][{j}]"
            raise PayloadError(422, f"'{where}' in row {i} must be a number, got {_kind(value)}")
    if small:
        return np.array(rows, dtype=np.float64)  # None (a missing value) becomes NaN
    return finite(np.array(rows, dtype=np.float64), field, limits.nullable)


def _bool(value: Any, where: str, row: int, limits: Limits, column: int) -> float:
    """A bool column's value in a matrix row as 1.0/0.0 (NaN: missing, where it may be)."""
    said = bool_value(value)
    if said is None:
        raise PayloadError(422, f"'{where}' in row {row}: {refusal(BOOL, value)}")
    if said != said and column not in limits.nullable:
        raise PayloadError(
            422, f"'{where}' in row {row} is missing ({_kind(value)}); this model takes no "
            "missing value in it",
        )  # fmt: skip
    return said


def _check_widths(rows: list[Any], field: str, width: int, what: str) -> None:
    for i, row in enumerate(rows):
        if not isinstance(row, list):
            raise PayloadError(422, f"'{field}[{i}]' must be a list of {width} {what}")
        if len(row) != width:
            raise PayloadError(
                422, f"'{field}[{i}]' has {len(row)} values; the model takes {width}"
            )


def _table(rows: list[Any], field: str, limits: Limits) -> dict[str, npt.NDArray[Any]]:
    """Rows of values in feature order → 1-D columns: text where the schema says string."""
    assert limits.schema is not None
    features = limits.schema.features
    _check_widths(rows, field, len(features), "values")
    table: dict[str, npt.NDArray[Any]] = {}
    for j, feature in enumerate(features):
        column = [row[j] for row in rows]
        table[feature.name] = column_values(column, feature, f"'{feature.name}'", "in row")
    return table


def column_values(
    values: list[Any] | npt.NDArray[Any], feature: Feature, where: str, row_word: str
) -> npt.NDArray[Any]:
    """One column's values checked against its kind: text, a bool (as 1.0/0.0), a category's
    value (text or a number), or finite float32 numbers (or missing ones, null or NaN, where
    the model imputes them)."""
    if feature.kind in (BOOL, CATEGORY):
        return _of_kind(values, feature, where, row_word)
    if feature.kind == STRING:
        for i, value in enumerate(values):
            if type(value) is str and value:
                continue
            if value is None or value == "":  # an empty text is missing, as in a CSV file
                if feature.nullable:
                    continue
                raise PayloadError(
                    422,
                    f"{where} {row_word} {i} is missing ({_kind(value)}); this model takes no "
                    "missing value in it",
                )
            raise PayloadError(
                422, f"{where} {row_word} {i} must be text (a string), got {_kind(value)}"
            )
        return np.array(values, dtype=object)
    for i, value in enumerate(values):
        if type(value) is not float and type(value) is not int:
            if value is None and feature.nullable:
                continue
            raise PayloadError(422, f"{where} {row_word} {i} must be a number, got {_kind(value)}")
    column = np.array(values, dtype=np.float64).reshape(-1, 1)
    return finite(column, where.strip("'"), (0,) if feature.nullable else ())[:, 0]


def _of_kind(
    values: list[Any] | npt.NDArray[Any], feature: Feature, where: str, row_word: str
) -> npt.NDArray[Any]:
    """A bool or category column (``model/values.py`` says what each takes)."""
    parsed, bad = parse(feature.kind, feature.categories, values)
    if bad.any():
        i = int(bad.nonzero()[0][0])
        raise PayloadError(422, f"{where} {row_word} {i}: {refusal(feature.kind, values[i])}")
    if not feature.nullable:
        gaps = np.isnan(parsed) if feature.kind == BOOL else np.array([v is None for v in parsed])
        if gaps.any():
            i = int(gaps.nonzero()[0][0])
            raise PayloadError(
                422,
                f"{where} {row_word} {i} is missing ({_kind(values[i])}); this model takes no "
                "missing value in it",
            )
    return parsed


def finite(
    values: npt.NDArray[Any], field: str, missing_ok: tuple[int, ...] = ()
) -> npt.NDArray[np.float64]:
    """``values`` as float64, as sent (the native model takes them so; ONNX graphs get them
    rounded to float32 at the feed); NaN, infinity and numbers beyond float32 are refused
    on every path alike, except NaN
    (a missing value) in the columns ``missing_ok`` of a 2-D ``values``."""
    if values.size and not np.isfinite(values).all():
        bad = ~np.isfinite(values)
        if missing_ok:
            bad[:, list(missing_ok)] &= ~np.isnan(values[:, list(missing_ok)])
        if bad.any():
            raise PayloadError(422, f"'{field}' holds NaN or infinity; send finite numbers")
    if values.size and (np.abs(values) > FLOAT32_MAX).any():  # NaN compares False
        raise PayloadError(422, f"'{field}' holds a number beyond the float32 range")
    return np.ascontiguousarray(values, dtype=np.float64)


def fits(value: Any, datatype: str) -> bool:
    """A JSON value of a v2 datatype: true/false for BOOL; a whole number for INT/UINT (JSON
    does not tell 3 from 3.0, so 3.0 counts, 3.5 does not); any number for FP."""
    kind = type(value)
    if datatype == "BOOL":
        return kind is bool
    if datatype.startswith(("INT", "UINT")):
        return kind is int or (kind is float and value.is_integer())
    return kind is int or kind is float


def check_rows(rows: int, field: str, limits: Limits) -> None:
    if rows == 0:
        raise PayloadError(422, f"'{field}' is empty: send at least one row")
    if rows > limits.max_rows:
        raise PayloadError(413, f"'{field}' has {rows} rows; the limit is {limits.max_rows}")


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if value == "":
        return "an empty string"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, float) and not math.isfinite(value):
        return "a non-finite number"
    names: dict[type, str] = {dict: "an object", list: "a list", str: "a string"}
    return names.get(type(value), type(value).__name__)
