"""The external-data refusal on the scoring path, read from the protobuf wire format without
the onnx package: wherever onnx itself finds a tensor kept in a file, and nowhere else."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnx.external_data_helper import _get_all_tensors

from mlops_ci.errors import InputError
from mlops_ci.model.onnxmodel import refuse_external_data

pytestmark = pytest.mark.timeout(60)

OUT = helper.make_tensor_value_info("y", TensorProto.UINT8, [16])
OPSETS = [helper.make_opsetid("", 17), helper.make_opsetid("d", 1)]


def external(name: str = "w") -> TensorProto:
    tensor = TensorProto(name=name, data_type=TensorProto.UINT8, dims=[16])
    tensor.data_location = TensorProto.EXTERNAL
    tensor.external_data.add(key="location", value="/proc/self/environ")
    return tensor


def graph(nodes: list[onnx.NodeProto], init: list[TensorProto] | None = None) -> onnx.GraphProto:
    return helper.make_graph(nodes, "g", [], [OUT], initializer=init or [])


def in_subgraph() -> onnx.ModelProto:
    branch = graph([helper.make_node("Identity", ["w"], ["y"])], [external()])
    cond = helper.make_tensor_value_info("c", TensorProto.BOOL, [])
    node = helper.make_node("If", ["c"], ["y"], then_branch=branch, else_branch=branch)
    return helper.make_model(helper.make_graph([node], "g", [cond], [OUT]))


def in_function() -> onnx.ModelProto:
    body = [helper.make_node("Constant", [], ["y"], value=external())]
    function = helper.make_function("d", "f", [], ["y"], body, OPSETS[:1])
    main = graph([helper.make_node("f", [], ["y"], domain="d")])
    return helper.make_model(main, functions=[function], opset_imports=OPSETS)


def sparse() -> onnx.ModelProto:
    tensor = onnx.SparseTensorProto(dims=[16])
    tensor.values.CopyFrom(external("v"))
    tensor.indices.CopyFrom(numpy_helper.from_array(np.array([0], np.int64), "i"))
    main = graph([helper.make_node("Identity", ["v"], ["y"])])
    main.sparse_initializer.append(tensor)
    return helper.make_model(main)


REFUSED = {
    "initializer": lambda: helper.make_model(
        graph([helper.make_node("Identity", ["w"], ["y"])], [external()])
    ),
    "attribute": lambda: helper.make_model(
        graph([helper.make_node("Constant", [], ["y"], value=external())])
    ),
    "subgraph": in_subgraph,
    "function": in_function,
}


@pytest.mark.parametrize("where", sorted(REFUSED))
def test_a_tensor_in_an_external_file_is_refused_wherever_onnx_finds_one(
    where: str, tmp_path: Path
) -> None:
    model = REFUSED[where]()
    assert any(t.data_location == TensorProto.EXTERNAL for t in _get_all_tensors(model))
    data = model.SerializeToString()
    with pytest.raises(InputError, match="model.onnx: .*external files; embed them"):
        refuse_external_data(data, "model.onnx")
    (tmp_path / "model.onnx").write_bytes(data)
    with pytest.raises(InputError, match="external files"):
        refuse_external_data(str(tmp_path / "model.onnx"), "model.onnx")


def test_a_sparse_initializer_in_an_external_file_is_refused_too() -> None:
    with pytest.raises(InputError, match="external files"):
        refuse_external_data(sparse().SerializeToString(), "model.onnx")


def test_embedded_tensors_and_long_runs_of_numbers_pass() -> None:
    weights = numpy_helper.from_array(np.arange(16, dtype=np.uint8), "w")
    # a tree ensemble's attributes: thousands of repeated ints, floats and strings
    node = helper.make_node(
        "Identity",
        ["w"],
        ["y"],
        ints_attr=list(range(5000)),
        floats_attr=[0.5] * 5000,
        strings_attr=["BRANCH_LEQ"] * 100,
    )
    model = helper.make_model(graph([node], [weights]))
    refuse_external_data(model.SerializeToString(), "model.onnx")  # no error


@pytest.mark.parametrize("data", [b"not onnx", b"", b"\xff" * 20, b"\x08"])
def test_bytes_that_are_not_onnx_are_left_to_onnxruntime(data: bytes, tmp_path: Path) -> None:
    refuse_external_data(data, "model.onnx")  # onnxruntime says what is wrong, its own way
    refuse_external_data(str(tmp_path / "absent.onnx"), "absent.onnx")
