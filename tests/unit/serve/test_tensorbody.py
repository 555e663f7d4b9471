"""A tensor model's request bodies: /score's named nested lists and v2's named tensors (JSON
data, nested or flat, and the binary extension), parsed and held to the contract; every
refusal a 4xx naming the input."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from mlops_ci.model.tensors import TensorInput, TensorSchema
from mlops_ci.serve.payload import Limits, PayloadError
from mlops_ci.serve.tensorbody import infer_tensors, score_tensors

pytestmark = pytest.mark.timeout(30)

SCHEMA = TensorSchema(
    (TensorInput("pixels", "float32", (-1, 2, 2)), TensorInput("mask", "bool", (-1, 2)))
)
LIMITS = Limits(2, SCHEMA.names, 4, None, SCHEMA)
PIXELS = np.arange(12, dtype=np.float32).reshape(3, 2, 2)
MASK = np.array([[1, 0], [0, 1], [1, 1]], dtype=bool)


def refused(call: Any, status: int, message: str) -> None:
    with pytest.raises(PayloadError) as err:
        call()
    assert err.value.status == status and message in str(err.value), str(err.value)


def test_score_takes_named_nested_lists() -> None:
    body = json.dumps({"inputs": {"pixels": PIXELS.tolist(), "mask": MASK.tolist()}}).encode()
    got = score_tensors(body, LIMITS)
    assert list(got) == ["pixels", "mask"]
    assert got["pixels"].dtype == np.float32 and np.array_equal(got["pixels"], PIXELS)
    assert got["mask"].dtype == np.bool_ and np.array_equal(got["mask"], MASK)
    refused(lambda: score_tensors(b'{"inputs": [[1, 2]]}', LIMITS), 400, "the model takes tensors")
    refused(
        lambda: score_tensors(b'{"inputs": {"pixels": 1, "mask": []}}', LIMITS),
        422,
        "'inputs.pixels' must be a nested list",
    )
    ragged = {"pixels": [[[1, 2], [3]]], "mask": [[1, 0]]}
    refused(
        lambda: score_tensors(json.dumps({"inputs": ragged}).encode(), LIMITS),
        422,
        "'inputs.pixels' is not rectangular",
    )
    many = {"pixels": np.zeros((5, 2, 2)).tolist(), "mask": np.ones((5, 2)).tolist()}
    refused(lambda: score_tensors(json.dumps({"inputs": many}).encode(), LIMITS), 413, "limit is 4")


def tensor(name: str, array: np.ndarray, datatype: str, flat: bool = True) -> dict[str, Any]:
    data = array.ravel().tolist() if flat else array.tolist()
    return {"name": name, "shape": list(array.shape), "datatype": datatype, "data": data}


def test_v2_takes_each_input_by_name_as_json_or_binary() -> None:
    inputs = [tensor("mask", MASK, "BOOL", flat=False), tensor("pixels", PIXELS, "FP32")]
    got = infer_tensors(inputs, b"", LIMITS)
    assert np.array_equal(got["pixels"], PIXELS) and np.array_equal(got["mask"], MASK)
    as_bytes = [
        {
            "name": "pixels",
            "shape": [3, 2, 2],
            "datatype": "FP64",
            "parameters": {"binary_data_size": 96},
        },
        {
            "name": "mask",
            "shape": [3, 2],
            "datatype": "BOOL",
            "parameters": {"binary_data_size": 6},
        },
    ]
    raw = PIXELS.astype("<f8").tobytes() + MASK.astype(np.uint8).tobytes()
    got = infer_tensors(as_bytes, raw, LIMITS)
    assert got["pixels"].dtype == np.float32 and np.array_equal(got["pixels"], PIXELS)
    assert np.array_equal(got["mask"], MASK)
    refused(lambda: infer_tensors(as_bytes, raw + b"x", LIMITS), 422, "1 bytes after the binary")
    refused(lambda: infer_tensors(as_bytes, raw[:-1], LIMITS), 422, "6, but 5 binary bytes")
    two = raw[:-1] + b"\x02"
    refused(lambda: infer_tensors(as_bytes, two, LIMITS), 422, "'mask': holds values other than")


@pytest.mark.parametrize(
    ("inputs", "status", "message"),
    [
        ([tensor("pixels", PIXELS, "FP32")] * 2, 400, "'inputs[1].name' 'pixels' is sent twice"),
        ([tensor("pixels", PIXELS, "BYTES")], 422, "'inputs[0].datatype' 'BYTES' is not"),
        (
            [
                {**tensor("pixels", PIXELS, "FP32"), "shape": [3, 4]},
                tensor("mask", MASK, "BOOL"),
            ],
            422,
            "input 'pixels': shape [3, 4] does not fit the model's [-1, 2, 2]",
        ),
        (
            [{**tensor("pixels", PIXELS, "FP32"), "shape": [2, 2, 2]}],
            422,
            "holds 12 values; the shape [2, 2, 2] says 8",
        ),
        ([{**tensor("pixels", PIXELS, "FP32"), "shape": "3"}], 422, "'inputs[0].shape' must be"),
        ([tensor("pixels", PIXELS, "FP32")], 422, "input 'mask' is missing"),
        ([tensor("pixels", PIXELS, "FP32"), tensor("mask", MASK[:2], "BOOL")], 422, "rows differ"),
    ],
)
def test_v2_refusals_name_the_input(inputs: list, status: int, message: str) -> None:
    refused(lambda: infer_tensors(inputs, b"", LIMITS), status, message)
