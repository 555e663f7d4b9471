"""An ONNX model from any exporter: scored, its inputs checked, standardized to our names."""

from __future__ import annotations

import json

import numpy as np
import onnxruntime as ort
import pandas as pd
import pytest
from onnx import TensorProto, helper, numpy_helper

from mlops_ci.errors import InputError
from mlops_ci.model.onnxmodel import OnnxModel, standardize
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
