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

A model whose schema is all numbers gets a float64 matrix; one with text columns a table of
1-D columns by name (float64 numbers, object strings; a missing value as ``features.py`` says).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson

from mlops_ci.features import STRING, Feature, FeatureSchema

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

    @cached_property
    def mixed(self) -> bool:
        """Some column is text: requests become tables, not one float matrix."""
        return self.schema is not None and not self.schema.all_numeric

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
    if not body:
        raise PayloadError(400, "empty request body: send a JSON object")
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as err:
        raise PayloadError(400, f"invalid JSON: {err}") from None
    if _LONG_DIGITS.search(body):
        _check_long_integers(body)
    return doc


# orjson reads an integer beyond 64 bits as a float64, and one just past the float32 range
# rounds onto its edge; 39+ digits (>= 1e38) are read again exactly, rarely, to refuse those.
_LONG_DIGITS = re.compile(rb"\d{39}")


def _check_long_integers(body: bytes) -> None:
    stack = [json.loads(body)]
    while stack:
        value = stack.pop()
        if type(value) is int and not -FLOAT32_MAX <= value <= FLOAT32_MAX:
            raise PayloadError(422, f"the number {str(value)[:12]}... is beyond the float32 range")
        if isinstance(value, list):
            stack.extend(value)
        elif isinstance(value, dict):
            stack.extend(value.values())


def parse_score(body: bytes, limits: Limits) -> Batch:
    """The ``/score`` body as a [rows, features] float32 matrix (or a table, see ``Batch``)."""
    doc = parse_json(body)
    if not isinstance(doc, dict):
        raise PayloadError(400, 'the body must be a JSON object such as {"inputs": [[...]]}')
    given = [key for key in SCORE_KEYS if key in doc]
    if len(given) > 1:
        raise PayloadError(400, f"send one of {', '.join(given)}, not {len(given)}")
    if "inputs" in doc:
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


def _rows_or_records(rows: Any, field: str, limits: Limits) -> Batch:
    if not isinstance(rows, list):
        raise PayloadError(400, f"'{field}' must be a list of rows, got {_kind(rows)}")
    _check_rows(len(rows), field, limits)
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
    _check_rows(len(data), f"{field}.data", limits)
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
    for i, row in enumerate(rows):
        for j, value in enumerate(row):
            kind = type(value)
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
    return _finite(np.array(rows, dtype=np.float64), field, limits.nullable)


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
        table[feature.name] = _column(column, feature, f"'{feature.name}'", "in row")
    return table


def _column(values: list[Any], feature: Feature, where: str, row_word: str) -> npt.NDArray[Any]:
    """One column's values checked against its kind: text, or finite float32 numbers (or
    missing ones, null or NaN, where the model imputes them)."""
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
    return _finite(column, where.strip("'"), (0,) if feature.nullable else ())[:, 0]


def _finite(
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


def _fits(value: Any, datatype: str) -> bool:
    """A JSON value of a v2 datatype: true/false for BOOL; a whole number for INT/UINT (JSON
    does not tell 3 from 3.0, so 3.0 counts, 3.5 does not); any number for FP."""
    kind = type(value)
    if datatype == "BOOL":
        return kind is bool
    if datatype.startswith(("INT", "UINT")):
        return kind is int or (kind is float and value.is_integer())
    return kind is int or kind is float


def _check_rows(rows: int, field: str, limits: Limits) -> None:
    if rows == 0:
        raise PayloadError(422, f"'{field}' is empty: send at least one row")
    if rows > limits.max_rows:
        raise PayloadError(413, f"'{field}' has {rows} rows; the limit is {limits.max_rows}")


def parse_infer(body: bytes, header_length: int | None, limits: Limits) -> InferRequest:
    """An Open Inference Protocol v2 request (JSON, or JSON header + binary tensor data)."""
    if header_length is not None:
        if header_length < 0 or header_length > len(body):
            raise PayloadError(400, "Inference-Header-Content-Length is beyond the body")
        doc, binary = parse_json(body[:header_length]), body[header_length:]
    else:
        doc, binary = parse_json(body), b""
    if not isinstance(doc, dict):
        raise PayloadError(400, "the body must be a JSON object with 'inputs'")
    inputs = doc.get("inputs")
    if (
        not isinstance(inputs, list)
        or not inputs
        or not all(isinstance(tensor, dict) for tensor in inputs)
    ):
        raise PayloadError(
            400,
            "'inputs' must be a list of tensors {name, shape, datatype, data}: one [rows, "
            "features] tensor, or one per column named like it",
        )
    request_id = doc.get("id")
    if "id" in doc and not isinstance(request_id, str):  # null too: the protocol says string
        raise PayloadError(400, "'id' must be a string")
    if not isinstance(doc.get("parameters", {}), dict):
        raise PayloadError(400, "'parameters' must be an object")
    outputs = _requested_outputs(doc["outputs"]) if "outputs" in doc else ()
    unnamed = [i for i, tensor in enumerate(inputs) if not isinstance(tensor.get("name"), str)]
    if unnamed:
        raise PayloadError(400, f"'inputs[{unnamed[0]}].name' must be a string")
    if len(inputs) == 1 and inputs[0]["name"] not in limits.features:
        if limits.mixed:
            assert limits.schema is not None
            raise PayloadError(
                422,
                f"this model has text columns ({', '.join(limits.schema.strings[:5])}): send one "
                "tensor per column, named like it, with datatype BYTES for text",
            )
        return InferRequest(_tensor(inputs[0], binary, limits), request_id, outputs)
    return InferRequest(_named_tensors(inputs, binary, limits), request_id, outputs)


def _named_tensors(inputs: list[Any], binary: bytes, limits: Limits) -> Batch:
    """One tensor per column, named like it → a table (or, all numbers, the matrix)."""
    schema = limits.schema or FeatureSchema.numeric(limits.features)
    if not schema.features:
        raise PayloadError(
            422, "this model's package records no feature names; send one [rows, features] tensor"
        )
    kinds = {f.name: f for f in schema.features}
    by_name: dict[str, dict[str, Any]] = {}
    for i, tensor in enumerate(inputs):
        name = tensor.get("name")
        if not isinstance(name, str) or name not in kinds:
            raise PayloadError(
                422,
                f"'inputs[{i}].name' {str(name)[:80]!r} is not a feature of this model "
                f"(features: {', '.join(schema.names[:20])})",
            )
        if name in by_name:
            raise PayloadError(422, f"'inputs[{i}]': column '{name}' is sent twice")
        by_name[name] = tensor
    missing = [n for n in schema.names if n not in by_name]
    if missing:
        raise PayloadError(422, f"'inputs': missing column(s) {', '.join(missing[:20])}")
    table: dict[str, npt.NDArray[Any]] = {}
    offset = 0
    rows: int | None = None
    for i, tensor in enumerate(inputs):
        feature = kinds[tensor["name"]]
        column, used = _column_tensor(i, tensor, feature, binary[offset:], limits)
        offset += used
        if rows is not None and len(column) != rows:
            raise PayloadError(
                422, f"'inputs[{i}]' ({feature.name}) has {len(column)} rows, the others {rows}"
            )
        rows = len(column)
        table[feature.name] = column
    if offset != len(binary):
        raise PayloadError(422, f"{len(binary) - offset} bytes of binary data belong to no input")
    if not limits.mixed:
        return np.ascontiguousarray(np.stack([table[n] for n in schema.names], axis=1))
    return table


def _column_tensor(
    i: int, tensor: dict[str, Any], feature: Feature, binary: bytes, limits: Limits
) -> tuple[npt.NDArray[Any], int]:
    """(the column, binary bytes it used) of one named v2 tensor of shape [rows] or [rows, 1]."""
    where = f"inputs[{i}]"
    shape, datatype = tensor.get("shape"), tensor.get("datatype")
    if (
        not isinstance(shape, list)
        or not 1 <= len(shape) <= 2
        or not all(type(d) is int and d >= 0 for d in shape)
        or (len(shape) == 2 and shape[1] != 1)
    ):
        raise PayloadError(422, f"'{where}.shape' must be [rows] or [rows, 1] for one column")
    rows = shape[0]
    _check_rows(rows, where, limits)
    if feature.kind == STRING and datatype != "BYTES":
        raise PayloadError(
            422, f"'{where}.datatype' must be BYTES: column '{feature.name}' is text"
        )
    if feature.kind != STRING and (not isinstance(datatype, str) or datatype not in V2_NUMERIC):
        raise PayloadError(
            422,
            f"'{where}.datatype' {datatype!r} is not a numeric type (FP32, FP64, INT64, ...): "
            f"column '{feature.name}' is a number",
        )
    params = tensor.get("parameters") or {}
    size = params.get("binary_data_size") if isinstance(params, dict) else None
    if size is not None:
        if type(size) is not int or size < 0 or size > len(binary):
            raise PayloadError(422, f"'{where}': binary_data_size is beyond the binary data")
        chunk = binary[:size]
        if feature.kind == STRING:
            texts = list(_binary_strings(chunk, rows, where))
            return _column(texts, feature, f"'{feature.name}'", "in row"), size
        missing_ok = (0,) if feature.nullable else ()
        return _binary(chunk, size, rows, 1, str(datatype), missing_ok)[:, 0], size
    data = tensor.get("data")
    if not isinstance(data, list):
        raise PayloadError(422, f"'{where}.data' must be a list")
    _check_nesting(data, shape, where)
    flat = _flatten(data, rows, where)
    if feature.kind != STRING:  # datatype is one of V2_NUMERIC, checked above
        datatype = str(datatype)
        if not all(_fits(v, datatype) or v is None for v in flat):
            raise PayloadError(422, f"'{where}.data' must hold {_kind_of(datatype)}")
        if datatype == "BOOL":
            flat = [None if v is None else int(v) for v in flat]
    return _column(flat, feature, f"'{feature.name}'", "in row"), 0


def _binary_strings(chunk: bytes, rows: int, where: str) -> npt.NDArray[Any]:
    """BYTES in the binary extension: each element a 4-byte little-endian length, then UTF-8."""
    values, at = [], 0
    for _ in range(rows):
        if at + 4 > len(chunk):
            raise PayloadError(422, f"'{where}': binary BYTES data ends early")
        length = int.from_bytes(chunk[at : at + 4], "little")
        at += 4
        if at + length > len(chunk):
            raise PayloadError(422, f"'{where}': binary BYTES data ends early")
        try:
            values.append(chunk[at : at + length].decode("utf-8"))
        except UnicodeDecodeError:
            raise PayloadError(422, f"'{where}': binary BYTES element is not UTF-8") from None
        at += length
    if at != len(chunk):
        raise PayloadError(422, f"'{where}': binary BYTES data is longer than {rows} elements")
    return np.array(values, dtype=object)


def _tensor(tensor: dict[str, Any], binary: bytes, limits: Limits) -> npt.NDArray[np.float64]:
    shape, datatype = tensor.get("shape"), tensor.get("datatype")
    if (
        not isinstance(shape, list)
        or len(shape) != 2
        or not all(type(d) is int and d >= 0 for d in shape)
    ):
        raise PayloadError(422, f"'inputs[0].shape' must be [rows, {limits.n_features}]")
    rows, width = shape
    if width != limits.n_features:
        raise PayloadError(
            422, f"'inputs[0].shape' is {shape}; the model takes [rows, {limits.n_features}]"
        )
    _check_rows(rows, "inputs[0]", limits)
    if not isinstance(datatype, str) or datatype not in V2_NUMERIC:  # a dict is unhashable
        raise PayloadError(
            422, f"'inputs[0].datatype' {datatype!r} is not a numeric type (FP32, FP64, INT64, ...)"
        )
    params = tensor.get("parameters") or {}
    size = params.get("binary_data_size") if isinstance(params, dict) else None
    if size is not None:
        return _binary(binary, size, rows, width, datatype, limits.nullable)
    data = tensor.get("data")
    if not isinstance(data, list):
        raise PayloadError(422, "'inputs[0].data' must be a list of numbers")
    _check_nesting(data, [rows, width], "inputs[0]")
    flat = _flatten(data, rows * width, "inputs[0]")
    if not all(
        _fits(v, datatype) or (v is None and k % width in limits.nullable)
        for k, v in enumerate(flat)
    ):
        raise PayloadError(422, f"'inputs[0].data' must hold {_kind_of(datatype)}")
    values = np.array(flat, dtype=np.float64).reshape(rows, width)
    return _finite(values, "inputs[0].data", limits.nullable)


def _kind_of(datatype: str) -> str:
    if datatype == "BOOL":
        return "true/false for datatype BOOL"
    if datatype.startswith(("INT", "UINT")):
        return f"whole numbers for datatype {datatype}"
    return f"only numbers for datatype {datatype}"


def _check_nesting(data: list[Any], shape: list[int], where: str) -> None:
    """Nested data must follow the shape at every level (flat data is counted by _flatten):
    [[1, 2, 3], [4, 5, 6, 7, 8]] is not 2 rows of 4, whatever its total."""
    if not any(isinstance(v, list) for v in data):
        return
    if len(data) != shape[0] or len(shape) == 1:
        raise PayloadError(422, f"'{where}.data' is nested unlike its shape {shape}")
    for row in data:
        if not isinstance(row, list):
            raise PayloadError(422, f"'{where}.data' mixes lists and values; shape {shape}")
        _check_nesting(row, shape[1:], where)
        if not any(isinstance(v, list) for v in row) and len(row) != shape[1]:
            raise PayloadError(
                422, f"'{where}.data' has a row of {len(row)} values; the shape says {shape[1]}"
            )


def _flatten(data: list[Any], expected: int, where: str) -> list[Any]:
    """v2 allows nested or flat data in row-major order; refuse a ragged or wrong-sized one."""
    flat: list[Any] = []
    stack = [iter(data)]
    while stack:
        for value in stack[-1]:
            if isinstance(value, list):
                stack.append(iter(value))
                break
            flat.append(value)
            if len(flat) > expected:
                stack.clear()
                break
        else:
            stack.pop()
    if len(flat) != expected:
        raise PayloadError(
            422,
            f"'{where}.data' holds {len(flat)}+ values; the shape says {expected}"
            if len(flat) > expected
            else f"'{where}.data' holds {len(flat)} values; the shape says {expected}",
        )
    return flat


def _binary(
    binary: bytes, size: Any, rows: int, width: int, datatype: str, missing_ok: tuple[int, ...] = ()
) -> npt.NDArray[np.float64]:
    dtype = np.dtype(V2_NUMERIC[datatype])
    if type(size) is not int or size != len(binary) or size != rows * width * dtype.itemsize:
        raise PayloadError(
            422,
            f"binary tensor of {len(binary)} bytes does not match shape [{rows}, {width}] "
            f"of {datatype}",
        )
    if datatype == "BOOL" and binary.translate(None, b"\x00\x01"):
        raise PayloadError(422, "binary BOOL data must hold bytes 0 or 1")
    values = np.frombuffer(binary, dtype=dtype.newbyteorder("<")).reshape(rows, width)
    return _finite(values.astype(np.float64), "inputs[0] (binary)", missing_ok)


def _requested_outputs(outputs: Any) -> tuple[str, ...]:
    if not isinstance(outputs, list) or not all(
        isinstance(o, dict) and isinstance(o.get("name"), str) for o in outputs
    ):
        raise PayloadError(400, "'outputs' must be a list of {\"name\": ...}")
    return tuple(o["name"] for o in outputs)


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
