"""v2 (Open Inference Protocol) infer bodies: JSON and binary tensors, one tensor or one per
column, and the refusals."""

from __future__ import annotations

import re

import numpy as np
import orjson
import pytest

from mlops_ci.model.features import FeatureSchema
from mlops_ci.serve.payload import Limits, PayloadError
from mlops_ci.serve.v2payload import parse_infer
from tests.support.payloads import LIMITS, MIXED_LIMITS, v2_columns


def v2(tensor: dict[str, object]) -> bytes:
    import orjson

    return orjson.dumps({"id": "r1", "inputs": [tensor], "outputs": [{"name": "label"}]})


def test_v2_nested_flat_and_binary_tensors() -> None:
    nested = parse_infer(
        v2({"name": "input", "shape": [2, 2], "datatype": "FP64", "data": [[1, 2], [3, 4]]}),
        None,
        LIMITS,
    )
    flat = parse_infer(
        v2({"name": "input", "shape": [2, 2], "datatype": "INT64", "data": [1, 2, 3, 4]}),
        None,
        LIMITS,
    )
    assert nested.x.tolist() == flat.x.tolist() == [[1, 2], [3, 4]]
    assert nested.id == "r1" and nested.outputs == ("label",)
    raw = np.array([[1, 2], [3, 4]], np.float32).tobytes()
    header = v2(
        {
            "name": "input",
            "shape": [2, 2],
            "datatype": "FP32",
            "parameters": {"binary_data_size": 16},
        }
    )
    binary = parse_infer(header + raw, len(header), LIMITS)
    assert binary.x.tolist() == [[1, 2], [3, 4]]


@pytest.mark.parametrize(
    ("tensor", "says"),
    [
        ({"shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}, "model takes [rows, 2]"),
        ({"shape": [2, 2], "datatype": "FP32", "data": [1, 2, 3]}, "holds 3 values; the shape"),
        ({"shape": [1, 2], "datatype": "FP32", "data": [1, 2, 3]}, "holds 3+ values"),
        ({"shape": [1, 2], "datatype": "BYTES", "data": ["a", "b"]}, "not a numeric type"),
        ({"shape": [1, 2], "datatype": "FP32", "data": [1, "b"]}, "only numbers"),
        ({"shape": "1,2", "datatype": "FP32", "data": [1, 2]}, "must be [rows, 2]"),
        ({"shape": [0, 2], "datatype": "FP32", "data": []}, "is empty"),
        (
            {"shape": [1, 2], "datatype": "FP32", "parameters": {"binary_data_size": 4}},
            "does not match shape",
        ),
        ({"shape": [2, 2], "datatype": "FP32", "data": [[1], [2, 3, 4]]}, "row of 1 values"),
        ({"shape": [2, 2], "datatype": "FP32", "data": [[1, 2, 3, 4]]}, "nested unlike"),
        ({"shape": [2, 2], "datatype": "FP32", "data": [1, [2, 3], 4]}, "nested unlike"),
        ({"shape": [1, 2], "datatype": "INT64", "data": [1.5, 2]}, "whole numbers"),
        ({"shape": [1, 2], "datatype": "UINT8", "data": [True, 2]}, "whole numbers"),
        ({"shape": [1, 2], "datatype": {"FP32": 1}, "data": [1, 2]}, "not a numeric type"),
        ({"shape": [1, 2], "datatype": "BOOL", "data": [1, 0]}, "true/false"),
    ],
)
def test_v2_refusals(tensor: dict[str, object], says: str) -> None:
    with pytest.raises(PayloadError, match=None) as caught:
        parse_infer(v2({"name": "input", **tensor}), None, LIMITS)
    assert says in str(caught.value) and 400 <= caught.value.status < 500


def binary_request(datatype: str, raw: bytes) -> tuple[bytes, int]:
    header = v2(
        {
            "name": "input",
            "shape": [1, 2],
            "datatype": datatype,
            "parameters": {"binary_data_size": len(raw)},
        }
    )
    return header + raw, len(header)


@pytest.mark.parametrize(
    ("datatype", "raw", "says"),
    [
        ("FP32", np.array([[np.nan, 1]], np.float32).tobytes(), "NaN or infinity"),
        ("FP64", np.array([[np.inf, 1]], np.float64).tobytes(), "NaN or infinity"),
        ("BOOL", bytes([1, 7]), "bytes 0 or 1"),
    ],
)
def test_binary_tensors_are_checked_like_json_ones(datatype: str, raw: bytes, says: str) -> None:
    body, length = binary_request(datatype, raw)
    with pytest.raises(PayloadError, match=says) as caught:
        parse_infer(body, length, LIMITS)
    assert caught.value.status == 422
    ok, length = binary_request("BOOL", bytes([1, 0]))
    assert parse_infer(ok, length, LIMITS).x.tolist() == [[1.0, 0.0]]


def test_ragged_data_matching_the_total_is_refused() -> None:
    """[[1,2,3],[4,5,6,7,8]] holds 8 values, as shape [2, 4] wants, but is not 2 rows of 4."""
    limits = Limits(n_features=4, features=("a", "b", "c", "d"), max_rows=3)
    body = v2({"name": "input", "shape": [2, 4], "datatype": "FP32",
               "data": [[1, 2, 3], [4, 5, 6, 7, 8]]})  # fmt: skip
    with pytest.raises(PayloadError, match="row of 3 values"):
        parse_infer(body, None, limits)


def test_v2_whole_numbers_may_be_written_with_a_point_as_json_does_not_tell_them_apart() -> None:
    tensor = {"name": "input", "shape": [1, 2], "datatype": "INT64", "data": [3.0, -2]}
    assert parse_infer(v2(tensor), None, LIMITS).x.tolist() == [[3.0, -2.0]]


@pytest.mark.parametrize(
    ("extra", "says"),
    [
        ({"id": None}, "'id' must be a string"),
        ({"outputs": None}, "'outputs' must be a list"),
        ({"parameters": []}, "'parameters' must be an object"),
    ],
)
def test_v2_request_fields_of_the_wrong_type_are_refused(
    extra: dict[str, object], says: str
) -> None:
    tensor = {"name": "input", "shape": [1, 2], "datatype": "FP32", "data": [1, 2]}
    body = orjson.dumps({"inputs": [tensor], **extra})
    with pytest.raises(PayloadError, match=re.escape(says)) as caught:
        parse_infer(body, None, LIMITS)
    assert caught.value.status == 400


def test_a_v2_tensor_without_a_name_is_refused() -> None:
    body = orjson.dumps({"inputs": [{"shape": [1, 2], "datatype": "FP32", "data": [1, 2]}]})
    with pytest.raises(PayloadError, match=re.escape("'inputs[0].name' must be a string")):
        parse_infer(body, None, LIMITS)


def test_v2_one_tensor_per_column_json_and_binary_bytes() -> None:
    size = {"name": "size", "shape": [2, 1], "datatype": "FP32", "data": [1.5, 2]}
    colour = {"name": "colour", "shape": [2], "datatype": "BYTES", "data": ["red", "blue"]}
    table = parse_infer(v2_columns(colour, size), None, MIXED_LIMITS).x
    assert isinstance(table, dict) and table["colour"].tolist() == ["red", "blue"]
    raw = b"".join(len(s).to_bytes(4, "little") + s for s in (b"red", b"blue"))
    header = v2_columns(
        {**size, "data": None, "parameters": {"binary_data_size": 8}},
        {
            "name": "colour",
            "shape": [2],
            "datatype": "BYTES",
            "parameters": {"binary_data_size": len(raw)},
        },
    )
    body = header + np.array([1.5, 2], "<f4").tobytes() + raw
    table = parse_infer(body, len(header), MIXED_LIMITS).x
    assert isinstance(table, dict)
    assert table["colour"].tolist() == ["red", "blue"] and table["size"].tolist() == [1.5, 2.0]
    # All-numeric models take named columns too, as their matrix.
    numeric = Limits(2, ("a", "b"), 10, FeatureSchema.numeric(("a", "b")))
    x = parse_infer(
        v2_columns(
            {"name": "b", "shape": [1], "datatype": "INT64", "data": [2]},
            {"name": "a", "shape": [1], "datatype": "FP64", "data": [1]},
        ),
        None,
        numeric,
    ).x
    assert isinstance(x, np.ndarray) and x.tolist() == [[1.0, 2.0]]


@pytest.mark.parametrize(
    ("tensors", "says"),
    [
        (
            [{"name": "input", "shape": [1, 2], "datatype": "FP32", "data": [1, 2]}],
            "text or category columns",
        ),
        ([{"name": "size", "shape": [1], "datatype": "FP32", "data": [1]}], "missing column(s)"),
        (
            [
                {"name": "size", "shape": [1], "datatype": "FP32", "data": [1]},
                {"name": "colour", "shape": [1], "datatype": "FP32", "data": [1]},
            ],
            "must be BYTES",
        ),
        (
            [
                {"name": "size", "shape": [2], "datatype": "FP32", "data": [1, 2]},
                {"name": "colour", "shape": [1], "datatype": "BYTES", "data": ["x"]},
            ],
            "has 1 rows, the others 2",
        ),
        (
            [
                {"name": "size", "shape": [1], "datatype": "FP32", "data": [1]},
                {"name": "colour", "shape": [1], "datatype": "BYTES", "data": [7]},
            ],
            "must be text",
        ),
    ],
)
def test_v2_named_tensor_refusals(tensors: list[dict[str, object]], says: str) -> None:
    with pytest.raises(PayloadError) as caught:
        parse_infer(v2_columns(*tensors), None, MIXED_LIMITS)
    assert 400 <= caught.value.status < 500 and says in str(caught.value)


def test_v2_tensor_names_that_are_not_text_are_refused() -> None:
    body = v2_columns(
        {"name": ["size"], "shape": [1], "datatype": "FP32", "data": [1]},
        {"name": "colour", "shape": [1], "datatype": "BYTES", "data": ["x"]},
    )
    with pytest.raises(PayloadError, match=r"'inputs\[0\].name' must be a string"):
        parse_infer(body, None, MIXED_LIMITS)


FLAT_CASES = [
    [1, 2.5],
    [-3.0, 0],
    [3.4e38, -3.4e38],  # within float32
    [1e39, 1],  # beyond float32
    [-1e39, 1],
    [None, 1],
    [True, 1],
    ["1", 2],
    [1, [2]],
]


@pytest.mark.timeout(30)
@pytest.mark.parametrize("datatype", ["FP16", "FP32", "FP64", "INT64", "BOOL"])
@pytest.mark.parametrize("values", FLAT_CASES)
@pytest.mark.parametrize("nullable", [False, True])
def test_flat_data_is_taken_and_refused_as_the_same_rows_nested(
    datatype: str, values: list[object], nullable: bool
) -> None:
    """A small flat tensor of plain numbers is read in one loop; whatever it holds, the answer
    (the matrix, or the status and words of the refusal) is the one its nested spelling gets
    from the general path."""
    schema = FeatureSchema.from_list(
        [{"name": "a", "kind": "number", "nullable": nullable}, {"name": "b", "kind": "number"}],
        "test",
    )
    limits = Limits(2, ("a", "b"), 3, schema)
    answers = []
    for data in (values, [values]):
        body = v2({"name": "input", "shape": [1, 2], "datatype": datatype, "data": data})
        try:
            answers.append(parse_infer(body, None, limits).x.tolist())
        except PayloadError as err:
            answers.append((err.status, str(err)))
    if values == [1, [2]]:  # nested unlike its shape when flat; one row of a number and a list
        assert all(isinstance(a, tuple) and a[0] == 422 for a in answers)
        return
    assert repr(answers[0]) == repr(answers[1])


@pytest.mark.timeout(30)
def test_flat_data_beyond_float32_is_refused() -> None:
    body = v2({"name": "input", "shape": [1, 2], "datatype": "FP32", "data": [1e39, 1]})
    with pytest.raises(PayloadError, match="beyond the float32 range") as caught:
        parse_infer(body, None, LIMITS)
    assert caught.value.status == 422
    body = v2({"name": "input", "shape": [1, 2], "datatype": "FP32", "data": [3.4e38, -1.5]})
    x = parse_infer(body, None, LIMITS).x
    assert x.dtype == np.float64 and x.flags.c_contiguous and x.tolist() == [[3.4e38, -1.5]]


@pytest.mark.timeout(30)
@pytest.mark.parametrize(
    ("datatype", "raw", "expected"),
    [
        ("FP64", np.array([[1e39, 1]], "<f8").tobytes(), "beyond the float32 range"),
        ("FP16", np.array([[np.inf, 1]], "<f2").tobytes(), "NaN or infinity"),
        ("FP32", np.array([[-np.inf, 1]], "<f4").tobytes(), "NaN or infinity"),
        ("FP32", np.array([[3.4e38, -2.5]], "<f4").tobytes(), [[3.4e38, -2.5]]),
        ("INT64", np.array([[-(2**63), 2**62]], "<i8").tobytes(), [[-(2.0**63), 2.0**62]]),
        ("UINT64", np.array([[2**64 - 1, 0]], "<u8").tobytes(), [[2.0**64, 0.0]]),
        ("INT8", np.array([[-128, 127]], "<i1").tobytes(), [[-128.0, 127.0]]),
    ],
    ids=["fp64-beyond", "fp16-inf", "fp32-inf", "fp32", "int64", "uint64", "int8"],
)
def test_binary_tensors_of_each_kind(datatype: str, raw: bytes, expected: object) -> None:
    """Whole numbers are finite and within float32 by their type; a float tensor is checked
    for NaN and infinity, and an FP64 one for the float32 range too."""
    body, length = binary_request(datatype, raw)
    if isinstance(expected, str):
        with pytest.raises(PayloadError, match=expected) as caught:
            parse_infer(body, length, LIMITS)
        assert caught.value.status == 422
        return
    x = parse_infer(body, length, LIMITS).x
    assert isinstance(x, np.ndarray) and x.dtype == np.float64 and x.flags.c_contiguous
    assert x.tolist() == [[np.float32(v) if datatype == "FP32" else v for v in expected[0]]]
