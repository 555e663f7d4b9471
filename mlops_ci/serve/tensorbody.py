"""Request bodies of a tensor model (issue 43): ``/score`` takes ``{"inputs": {"input_ids":
[[...]], "attention_mask": [[...]]}}``; v2 ``infer`` takes every input by name with its shape
and datatype, its values as JSON ``data`` (nested or flat, row-major) or as raw little-endian
bytes after the JSON header (the binary tensor extension: the natural body for images).

The arrays are then held to the model's contract (``model/tensors.py``), so a missing input,
a wrong shape or a value the input's type cannot hold is a 422 naming the input, the same
words ``compare`` and ``batch-score`` use.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt

from mlops_ci.errors import InputError
from mlops_ci.model.tensors import TensorSchema
from mlops_ci.serve.payload import V2_NUMERIC, Limits, PayloadError, check_rows, parse_json

Arrays = dict[str, npt.NDArray[Any]]


def score_tensors(body: bytes, limits: Limits) -> Arrays:
    """The ``/score`` body of a tensor model: ``{"inputs": {name: nested lists}}``."""
    schema = _schema(limits)
    doc = parse_json(body)
    inputs = doc.get("inputs") if isinstance(doc, dict) else None
    if not isinstance(inputs, dict) or not inputs:
        raise PayloadError(
            400,
            'send {"inputs": {"name": nested lists, ...}}: the model takes tensors '
            f"({schema.describe()})",
        )
    arrays = {}
    for name, values in inputs.items():
        if not isinstance(values, list):
            raise PayloadError(422, f"'inputs.{name}' must be a nested list of values")
        arrays[name] = _array(values, f"inputs.{name}")
    return checked(arrays, limits)


def infer_tensors(inputs: list[dict[str, Any]], binary: bytes, limits: Limits) -> Arrays:
    """v2 ``inputs``, each by name; binary tensors take their bytes from ``binary`` in order."""
    arrays: Arrays = {}
    offset = 0
    for i, tensor in enumerate(inputs):
        where = f"inputs[{i}]"
        name = tensor["name"]
        if name in arrays:
            raise PayloadError(400, f"'{where}.name' {name!r} is sent twice")
        shape, datatype = tensor.get("shape"), tensor.get("datatype")
        if not isinstance(shape, list) or not all(type(d) is int and d >= 0 for d in shape):
            raise PayloadError(422, f"'{where}.shape' must be a list of sizes")
        if not isinstance(datatype, str) or datatype not in V2_NUMERIC:
            raise PayloadError(
                422,
                f"'{where}.datatype' {datatype!r} is not a numeric type (FP32, INT64, BOOL, ...)",
            )
        count = math.prod(shape)
        params = tensor.get("parameters") or {}
        size = params.get("binary_data_size") if isinstance(params, dict) else None
        if size is not None:
            arrays[name] = _binary(binary[offset:], size, shape, datatype, where)
            offset += size
            continue
        data = tensor.get("data")
        if not isinstance(data, list):
            raise PayloadError(422, f"'{where}.data' must be a list of values")
        values = _array(data, f"{where}.data")
        if values.size != count:
            raise PayloadError(
                422, f"'{where}.data' holds {values.size} values; the shape {shape} says {count}"
            )
        arrays[name] = values.reshape(shape)
    if offset != len(binary):
        raise PayloadError(422, f"{len(binary) - offset} bytes after the binary tensors")
    return checked(arrays, limits)


def checked(arrays: Arrays, limits: Limits) -> Arrays:
    """The arrays as the model takes them, or a 4xx naming the input and what is wrong."""
    schema = _schema(limits)
    for name, array in arrays.items():
        if array.ndim:
            check_rows(array.shape[0], name, limits)
    try:
        return schema.check(arrays, "request")
    except InputError as err:
        raise PayloadError(422, str(err).removeprefix("request: ")) from None


def _schema(limits: Limits) -> TensorSchema:
    if limits.tensors is None:  # pragma: no cover - the routes ask only for tensor models
        raise PayloadError(400, "this model takes a table, not tensors")
    return limits.tensors


def _array(values: list[Any], where: str) -> npt.NDArray[Any]:
    try:
        return np.asarray(values)
    except (ValueError, TypeError):
        raise PayloadError(422, f"'{where}' is not rectangular (rows of unequal length?)") from None


def _binary(
    chunk: bytes, size: Any, shape: list[int], datatype: str, where: str
) -> npt.NDArray[Any]:
    kind = np.dtype(np.uint8 if datatype == "BOOL" else V2_NUMERIC[datatype]).newbyteorder("<")
    if type(size) is int and size > len(chunk):
        raise PayloadError(
            422, f"'{where}': binary_data_size {size}, but {len(chunk)} binary bytes are left"
        )
    if type(size) is not int or size != math.prod(shape) * kind.itemsize:
        raise PayloadError(
            422, f"'{where}': {size!r} binary bytes do not hold shape {shape} of {datatype}"
        )
    return np.frombuffer(chunk[:size], dtype=kind).reshape(shape)
