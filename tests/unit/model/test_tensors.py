"""A tensor model's input contract: read from a real onnxruntime session of a graph with three
inputs (symbolic, unknown and fixed dims), kept as a list and read back, and the arrays every
path hands the model checked against it, naming the input."""

from __future__ import annotations

from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from mlops_ci.errors import InputError
from mlops_ci.model.tensors import TensorInput, TensorSchema, conform

pytestmark = pytest.mark.timeout(60)


def session(inputs: list[Any]) -> Any:
    nodes = [helper.make_node("Identity", [i.name], [f"out_{i.name}"]) for i in inputs]
    outputs = [
        helper.make_tensor_value_info(f"out_{i.name}", i.type.tensor_type.elem_type, None)
        for i in inputs
    ]
    model = helper.make_model(
        helper.make_graph(nodes, "g", inputs, outputs), opset_imports=[helper.make_opsetid("", 17)]
    )
    model.ir_version = 8
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


TEXT = session(
    [
        helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", 8]),
        helper.make_tensor_value_info("attention_mask", TensorProto.BOOL, ["batch", 8]),
        helper.make_tensor_value_info("pixels", TensorProto.FLOAT, [None, 3, 4, 4]),
    ]
)
SCHEMA = TensorSchema.of_graph(TEXT.get_inputs(), "model.onnx")


def good(rows: int = 2) -> dict[str, Any]:
    return {
        "input_ids": [[1, 2, 3, 4, 5, 6, 7, 8]] * rows,
        "attention_mask": [[True] * 8] * rows,
        "pixels": np.zeros((rows, 3, 4, 4)).tolist(),
    }


def test_the_contract_is_read_from_the_graph_and_kept_as_a_list() -> None:
    assert SCHEMA.inputs == (
        TensorInput("input_ids", "int64", (-1, 8)),
        TensorInput("attention_mask", "bool", (-1, 8)),
        TensorInput("pixels", "float32", (-1, 3, 4, 4)),
    )
    assert [i.datatype for i in SCHEMA.inputs] == ["INT64", "BOOL", "FP32"]
    assert TensorSchema.from_list(SCHEMA.to_list(), "manifest.json") == SCHEMA


def test_checked_arrays_feed_the_session_and_come_back_unchanged() -> None:
    fed = SCHEMA.check(good(3), "/score")
    assert list(fed) == ["input_ids", "attention_mask", "pixels"]
    assert [a.dtype for a in fed.values()] == [np.int64, np.bool_, np.float32]
    answers = TEXT.run(None, fed)
    for got, want in zip(answers, fed.values(), strict=True):
        assert np.array_equal(got, want)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"attention_mask": None}, r"input 'attention_mask' is missing; the model takes input_ids"),
        ({"token_type_ids": [[0] * 8]}, r"'token_type_ids' is not an input of the model"),
        (
            {"input_ids": [[1] * 7] * 2},
            r"input 'input_ids': shape \[2, 7\] does not fit .*\[-1, 8\]",
        ),
        ({"pixels": np.zeros((2, 4, 4, 3)).tolist()}, r"'pixels': shape \[2, 4, 4, 3\]"),
        ({"input_ids": [[1] * 8, [1] * 7]}, r"'input_ids': not a rectangular array"),
        ({"input_ids": [[1.5] * 8] * 2}, r"'input_ids': .* not a whole number; it is int64"),
        ({"input_ids": [[2**63] * 8] * 2}, r"'input_ids': holds a value outside int64's range"),
        ({"input_ids": [["a"] * 8] * 2}, r"'input_ids': holds text; the model takes int64"),
        ({"input_ids": [[None] * 8] * 2}, r"'input_ids': holds values that are not all numbers"),
        ({"attention_mask": [[2] * 8] * 2}, r"'attention_mask': .* other than 0/1"),
        ({"pixels": np.full((2, 3, 4, 4), np.nan).tolist()}, r"'pixels': holds NaN or infinity"),
        ({"pixels": np.full((2, 3, 4, 4), 1e39).tolist()}, r"'pixels': .* beyond float32's range"),
        ({"input_ids": [[1] * 8] * 3}, r"the inputs' rows differ \('input_ids' 3, "),
        ({"input_ids": np.zeros((0, 8), dtype=np.int64)}, r"'input_ids': no rows"),
    ],
)
def test_what_does_not_fit_is_bad_input_naming_the_input(change: dict, message: str) -> None:
    arrays = good()
    for name, value in change.items():
        if value is None:
            del arrays[name]
        else:
            arrays[name] = value
    with pytest.raises(InputError, match="^/score: .*" + message):
        SCHEMA.check(arrays, "/score")


def test_types_convert_only_where_no_value_changes_meaning() -> None:
    ids = TensorInput("ids", "int32", (-1, 2))
    assert conform(ids, [[1.0, 2.0]], "x").dtype == np.int32  # whole floats
    mask = TensorInput("mask", "bool", (-1, 2))
    assert conform(mask, [[0, 1]], "x").tolist() == [[False, True]]
    pixels = TensorInput("p", "float32", (-1, 2))
    assert conform(pixels, [[1, True]], "x").tolist() == [[1.0, 1.0]]


def test_a_graph_input_no_array_here_holds_is_refused() -> None:
    text = session([helper.make_tensor_value_info("words", TensorProto.STRING, [None, 1])])
    with pytest.raises(InputError, match=r"model.onnx: input 'words' is tensor\(string\)"):
        TensorSchema.of_graph(text.get_inputs(), "model.onnx")


@pytest.mark.parametrize(
    ("items", "message"),
    [
        ([], r"'tensors' must be a non-empty list"),
        ([{"name": "x", "dtype": "complex64", "shape": [-1]}], r"tensors\[0\]: dtype 'complex64'"),
        ([{"name": "x", "dtype": "int64", "shape": [0, 2]}], r"tensors\[0\]: shape must be"),
        ([{"name": "x", "dtype": "int64", "shape": [-1]}] * 2, r"input 'x' is named twice"),
    ],
)
def test_a_damaged_contract_is_bad_input(items: Any, message: str) -> None:
    with pytest.raises(InputError, match="manifest.json: " + message):
        TensorSchema.from_list(items, "manifest.json")


def test_rows_of_named_arrays_are_cut_together_and_fed_by_name() -> None:
    from mlops_ci.model.tensors import Tensors

    arrays = {k: np.asarray(v) for k, v in good(4).items()}
    rows = Tensors({**arrays, "length": np.array(["s", "l", "s", "l"])}, "test.npz")
    assert len(rows) == 4 and rows.columns == [*arrays, "length"]
    two = rows.take(slice(1, 3))
    assert len(two) == 2 and two.arrays["length"].tolist() == ["l", "s"]
    fed = two.for_model(SCHEMA)  # the metadata array is not the model's: left out
    assert list(fed) == list(SCHEMA.names)
    assert np.array_equal(fed["input_ids"], arrays["input_ids"][1:3])
    with pytest.raises(InputError, match=r"test.npz: input 'attention_mask' is missing"):
        Tensors({"input_ids": arrays["input_ids"]}, "test.npz").for_model(SCHEMA)
    with pytest.raises(InputError, match=r"array 'b' has other rows than the rest"):
        Tensors({"a": np.zeros((3, 2)), "b": np.zeros((2, 2))}, "test.npz")
    with pytest.raises(InputError, match=r"test.npz: holds no input arrays"):
        Tensors({}, "test.npz")


def test_a_float_past_an_integer_types_range_is_refused_not_wrapped() -> None:
    ids = TensorInput("ids", "int64", (-1, 1))
    for value in (2.0**63, -(2.0**63) - 4096, 1e30):
        with pytest.raises(InputError, match=r"'ids': holds a value outside int64's range"):
            conform(ids, [[value]], "x")
    assert conform(ids, [[2.0**62]], "x").tolist() == [[2**62]]
    small = TensorInput("ids", "uint8", (-1, 1))
    with pytest.raises(InputError, match=r"outside uint8's range \(0..255\)"):
        conform(small, [[256.0]], "x")


def test_a_graph_input_with_fixed_rows_or_no_shape_is_refused_with_how_to_export_it() -> None:
    fixed = session([helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 4, 4])])
    with pytest.raises(InputError, match=r"input 'x' \[1, 1, 4, 4\] takes exactly 1 row") as err:
        TensorSchema.of_graph(fixed.get_inputs(), "model.onnx")
    assert "dynamic_axes={'x': {0: 'rows'}}" in str(err.value.hint)
    unshaped = session([helper.make_tensor_value_info("x", TensorProto.FLOAT, None)])
    with pytest.raises(
        InputError, match=r"input 'x' has no dims \(a scalar, or no shape declared\)"
    ):
        TensorSchema.of_graph(unshaped.get_inputs(), "model.onnx")
