"""An ONNX model from any exporter: scored, its inputs checked, standardized to our names."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pandas as pd
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnx.external_data_helper import _get_all_tensors

from mlops_ci.errors import InputError
from mlops_ci.model.onnxmodel import OnnxModel, refuse_external_data, standardize
from mlops_ci.packaging import convert
from tests.support.tensor_models import text_graph


def softmax_graph(output: str = "probs", classes: list[str] | None = None) -> bytes:
    """A 3-feature, 2-class softmax model as an exporter writes it: input x, output probs."""
    w = numpy_helper.from_array(np.array([[1, -1], [1, -1], [0, 0]], np.float32), "w")
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "w"], ["logits"]),
            helper.make_node("Softmax", ["logits"], [output], axis=1),
        ],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3])],
        [helper.make_tensor_value_info(output, TensorProto.FLOAT, ["n", 2])],
        [w],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    if classes:
        helper.set_model_props(model, {"classes": json.dumps(classes)})
    return bytes(model.SerializeToString())


@pytest.mark.parametrize(("classes", "expected"), [(["no", "yes"], ["no", "yes"]), (None, [0, 1])])
def test_onnx_classifier_from_any_exporter_is_scored_and_standardized(
    classes: list[str] | None, expected: list[object]
) -> None:
    model = OnnxModel(softmax_graph(classes=classes), "classification")
    rows = pd.DataFrame([[1.0, 1.0, 0.0], [-1.0, -1.0, 5.0]], columns=["a", "b", "c"])
    assert model.predict(rows).tolist() == expected
    assert model.predict_proba(rows).shape == (2, 2)
    data, layout = standardize(model, ("a", "b", "c"))
    assert layout == "matrix"
    sess = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    assert [i.name for i in sess.get_inputs()] == ["input"]
    label, proba = sess.run(["label", "probabilities"], {"input": rows.to_numpy(np.float32)})
    assert label.tolist() == [str(e) if classes else e for e in expected]
    assert np.allclose(proba, model.predict_proba(rows))


def test_onnx_outputs_named_like_ours_and_regressors() -> None:
    clash = OnnxModel(softmax_graph(output="label"), "classification")  # a float output "label"
    data, _ = standardize(clash, ("a", "b", "c"))
    sess = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    label, proba = sess.run(["label", "probabilities"], {"input": np.ones((1, 3), np.float32)})
    assert label.tolist() == [0] and proba.shape == (1, 2)
    regressor = OnnxModel(linear_graph(), "regression")
    assert not convert.is_classifier(regressor)
    rows = pd.DataFrame(np.ones((4, 3)), columns=["a", "b", "c"])
    assert regressor.predict(rows).tolist() == [6.0] * 4
    data, _ = standardize(regressor, ("a", "b", "c"))
    sess = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    (values,) = sess.run(["variable"], {"input": np.ones((4, 3), np.float32)})
    assert values.shape == (4, 1) and values[0, 0] == 6.0


def linear_graph(input_type: int = TensorProto.FLOAT) -> bytes:
    """y = x · [1, 2, 3] with output shape [rows], as a regression exporter writes it."""
    w = numpy_helper.from_array(np.array([1, 2, 3], np.float32), "w")
    nodes = [helper.make_node("MatMul", ["x32", "w"], ["y"])]
    nodes.insert(0, helper.make_node("Cast", ["x"], ["x32"], to=TensorProto.FLOAT))
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", input_type, ["n", 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n"])],
        [w],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return bytes(model.SerializeToString())


def test_onnx_inputs_that_are_not_float_or_not_columns_are_named() -> None:
    doubles = OnnxModel(linear_graph(TensorProto.DOUBLE), "regression", "m.onnx")
    assert doubles.tensors is not None  # not a table's float32 input: a tensor model
    with pytest.raises(
        InputError, match=r"m.onnx: takes tensors \(x \[-1, 3\] float64\), not a table"
    ):
        doubles.predict(pd.DataFrame({"a": [1.0], "b": [2.0]}))
    per_column = OnnxModel(softmax_graph(), "classification")
    per_column.columns = ("a", "z")
    with pytest.raises(InputError, match="input\\(s\\) z are not columns of evaluate.data"):
        standardize(per_column, ("a", "b"))
    with pytest.raises(InputError, match="not an ONNX model"):
        OnnxModel(b"not onnx", "classification")


def test_an_onnx_graph_keeping_a_tensor_in_an_external_file_is_refused() -> None:
    # the bytes of such a tensor would be read from a file of mlops-ci's (/proc/self/environ)
    from onnx import TensorProto, helper

    from mlops_ci.errors import InputError
    from mlops_ci.model.onnxmodel import refuse_external_data

    tensor = TensorProto(name="w", data_type=TensorProto.UINT8, dims=[16])
    tensor.data_location = TensorProto.EXTERNAL
    tensor.external_data.add(key="location", value="/proc/self/environ")
    out = helper.make_tensor_value_info("y", TensorProto.UINT8, [16])
    graph = helper.make_graph(
        [helper.make_node("Identity", ["w"], ["y"])], "g", [], [out], initializer=[tensor]
    )
    with pytest.raises(InputError, match="external files"):
        refuse_external_data(helper.make_model(graph).SerializeToString(), "model.onnx")


def test_a_tensor_model_is_scored_on_its_named_arrays_a_call_at_a_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from mlops_ci.model import onnxmodel
    from mlops_ci.model.tensors import TensorInput, Tensors

    model = OnnxModel(text_graph(), "classification", "text.onnx")
    assert model.columns is None and not hasattr(model, "feature_names_in_")
    assert model.tensors is not None and model.tensors.inputs == (
        TensorInput("input_ids", "int64", (-1, 6)),
        TensorInput("attention_mask", "int64", (-1, 6)),
    )
    rng = np.random.default_rng(5)
    ids = rng.integers(1, 10, (50, 6))
    mask = (rng.random((50, 6)) > 0.3).astype(np.int64)
    mask[:, 0] = 1
    rows = Tensors({"input_ids": ids, "attention_mask": mask, "length": np.arange(50)}, "t.npz")
    sess = ort.InferenceSession(text_graph(), providers=["CPUExecutionProvider"])
    (want,) = sess.run(None, {"input_ids": ids, "attention_mask": mask})
    labels = np.array(["sports", "finance", "weather"])[want.argmax(axis=1)]
    monkeypatch.setattr(onnxmodel, "CALL_BYTES", 7 * 96)  # 7 rows a call: 8 calls
    assert np.array_equal(model.predict_proba(rows), want.astype(np.float64))
    assert model.predict(rows).tolist() == labels.tolist()
    as_lists = {"input_ids": ids[:2].tolist(), "attention_mask": mask[:2].tolist()}
    assert model.predict(as_lists).tolist() == labels[:2].tolist()  # a request's body
    with pytest.raises(InputError, match=r"t.npz: input 'attention_mask': shape \[50, 5\]"):
        model.predict(Tensors({"input_ids": ids, "attention_mask": mask[:, :5]}, "t.npz"))
    data, layout = standardize(model, ())  # the graph's own inputs, mlops-ci's outputs
    assert layout == "tensors"
    served = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    assert [i.name for i in served.get_inputs()] == ["input_ids", "attention_mask"]
    label, proba = served.run(
        ["label", "probabilities"], {"input_ids": ids, "attention_mask": mask}
    )
    assert label.tolist() == labels.tolist() and np.array_equal(proba, want)


def test_a_table_model_given_arrays_says_it_takes_a_table() -> None:
    from mlops_ci.model.tensors import Tensors

    model = OnnxModel(softmax_graph(), "classification", "m.onnx")
    rows = Tensors({"x": np.ones((2, 3), np.float32)}, "test.npz")
    with pytest.raises(InputError, match=r"test.npz: holds arrays, but m.onnx takes a table \(x "):
        model.predict(rows)


def test_values_onnxruntime_refuses_are_bad_input_naming_the_data() -> None:
    from mlops_ci.model.tensors import Tensors

    model = OnnxModel(text_graph(), "classification", "text.onnx")
    ids = np.full((2, 6), 64, dtype=np.int64)  # past the 10-token vocabulary
    rows = Tensors({"input_ids": ids, "attention_mask": np.ones((2, 6), np.int64)}, "t.npz")
    with pytest.raises(InputError, match=r"^onnxruntime refused the values: .*Gather") as err:
        model.predict(rows)
    assert "onnxruntime_src" not in str(err.value) and "\n" not in str(err.value)


# The external-data refusal on the scoring path, read from the protobuf wire format without the
# onnx package: wherever onnx itself finds a tensor kept in a file, and nowhere else.
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
