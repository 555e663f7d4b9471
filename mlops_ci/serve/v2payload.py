"""Open Inference Protocol v2 request bodies → the model's input, or a 4xx: one [rows,
features] tensor (all-numeric models) or one tensor per column named like it (BYTES for text),
``data`` flat or nested, or raw bytes after the JSON header (the binary tensor extension
tritonclient uses, ``Inference-Header-Content-Length``). The checks of a value are
``payload``'s, shared with ``/score``."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from mlops_ci.model.features import BOOL, CATEGORY, NUMBER, STRING, Feature, FeatureSchema
from mlops_ci.serve.payload import (
    FLOAT32_MAX,
    SMALL_BATCH,
    V2_NUMERIC,
    Batch,
    InferRequest,
    Limits,
    PayloadError,
    check_rows,
    column_values,
    finite,
    fits,
    parse_json,
)
from mlops_ci.serve.tensorbody import infer_tensors


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
    if limits.tensors is not None:  # each input by name, of any rank
        return InferRequest(infer_tensors(inputs, binary, limits), request_id, outputs)
    if len(inputs) == 1 and inputs[0]["name"] not in limits.features:
        if limits.mixed:
            assert limits.schema is not None
            raise PayloadError(
                422,
                f"this model has text or category columns "
                f"({', '.join(limits.schema.not_numeric[:5])}): send one tensor per column, "
                "named like it, with datatype BYTES for text",
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
    check_rows(rows, where, limits)
    text = datatype == "BYTES" and feature.kind in (STRING, CATEGORY)
    if feature.kind == STRING and not text:
        raise PayloadError(
            422, f"'{where}.datatype' must be BYTES: column '{feature.name}' is text"
        )
    if not text and (
        not isinstance(datatype, str)
        or datatype not in V2_NUMERIC
        or (feature.kind == CATEGORY and datatype == "BOOL")
    ):
        raise PayloadError(422, f"'{where}.datatype' {datatype!r} {_wanted(feature)}")
    params = tensor.get("parameters") or {}
    size = params.get("binary_data_size") if isinstance(params, dict) else None
    if size is not None:
        if type(size) is not int or size < 0 or size > len(binary):
            raise PayloadError(422, f"'{where}': binary_data_size is beyond the binary data")
        chunk = binary[:size]
        if text:
            texts = list(_binary_strings(chunk, rows, where))
            return column_values(texts, feature, f"'{feature.name}'", "in row"), size
        missing_ok = (0,) if feature.nullable else ()
        column = _binary(chunk, size, rows, 1, str(datatype), missing_ok)[:, 0]
        if feature.kind != NUMBER:  # 0/1 for a bool; a number for a category
            column = column_values(column, feature, f"'{feature.name}'", "in row")
        return column, size
    data = tensor.get("data")
    if not isinstance(data, list):
        raise PayloadError(422, f"'{where}.data' must be a list")
    _check_nesting(data, shape, where)
    flat = _flatten(data, rows, where)
    if not text:  # datatype is one of V2_NUMERIC, checked above
        datatype = str(datatype)
        if not all(fits(v, datatype) or v is None for v in flat):
            raise PayloadError(422, f"'{where}.data' must hold {_kind_of(datatype)}")
        if datatype == "BOOL" and feature.kind == NUMBER:
            flat = [None if v is None else int(v) for v in flat]
    return column_values(flat, feature, f"'{feature.name}'", "in row"), 0


def _wanted(feature: Feature) -> str:
    """What a tensor's datatype must be for ``feature``'s column, said when it is not."""
    if feature.kind == BOOL:
        return f"is not BOOL or a numeric type: column '{feature.name}' is a bool"
    if feature.kind == CATEGORY:
        return f"is not BYTES or a numeric type (INT64, ...): column '{feature.name}' is a category"
    return f"is not a numeric type (FP32, FP64, INT64, ...): column '{feature.name}' is a number"


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
    check_rows(rows, "inputs[0]", limits)
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
    if datatype in _FLOATS and len(data) == rows * width <= SMALL_BATCH and _plain(data):
        return np.array(data, dtype=np.float64).reshape(rows, width)
    _check_nesting(data, [rows, width], "inputs[0]")
    flat = _flatten(data, rows * width, "inputs[0]")
    if not all(
        fits(v, datatype) or (v is None and k % width in limits.nullable)
        for k, v in enumerate(flat)
    ):
        raise PayloadError(422, f"'inputs[0].data' must hold {_kind_of(datatype)}")
    values = np.array(flat, dtype=np.float64).reshape(rows, width)
    return finite(values, "inputs[0].data", limits.nullable)


_FLOATS = frozenset(("FP16", "FP32", "FP64"))
# The binary extension's tensors are little-endian, whatever this machine is.
_LITTLE_ENDIAN = {name: np.dtype(kind).newbyteorder("<") for name, kind in V2_NUMERIC.items()}


def _plain(data: list[Any]) -> bool:
    """Flat numbers, all finite and within the float32 range: what a client sends nearly
    always, checked here in one loop (as ``/score``'s small batches are) instead of the
    general path's walk, per-value datatype check and numpy passes. Anything else — nesting,
    null, a bool, NaN, a number out of range — takes the general path, which says what is
    wrong (or lets a missing value through where the model takes one)."""
    for value in data:
        kind = type(value)
        if (kind is not float and kind is not int) or not -FLOAT32_MAX <= value <= FLOAT32_MAX:
            return False
    return True


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
    dtype = _LITTLE_ENDIAN[datatype]
    if type(size) is not int or size != len(binary) or size != rows * width * dtype.itemsize:
        raise PayloadError(
            422,
            f"binary tensor of {len(binary)} bytes does not match shape [{rows}, {width}] "
            f"of {datatype}",
        )
    if datatype == "BOOL" and binary.translate(None, b"\x00\x01"):
        raise PayloadError(422, "binary BOOL data must hold bytes 0 or 1")
    values = np.frombuffer(binary, dtype=dtype).reshape(rows, width)
    x = values.astype(np.float64)
    if dtype.kind in "biu":  # whole numbers, all finite and within the float32 range
        return x
    if x.size <= SMALL_BATCH and _plain(x.ravel().tolist()):  # NaN and inf fail it too
        return x
    return finite(x, "inputs[0] (binary)", missing_ok)


def _requested_outputs(outputs: Any) -> tuple[str, ...]:
    if not isinstance(outputs, list) or not all(
        isinstance(o, dict) and isinstance(o.get("name"), str) for o in outputs
    ):
        raise PayloadError(400, "'outputs' must be a list of {\"name\": ...}")
    return tuple(o["name"] for o in outputs)
