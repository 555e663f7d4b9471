"""Tensor models for the tests (issue 43), built with onnx.helper as an exporter writes them."""

from __future__ import annotations

import json

import numpy as np
from onnx import TensorProto, helper, numpy_helper

CLASSES = ["sports", "finance", "weather"]


def text_graph() -> bytes:
    """A 2-input text classifier as a transformer exports it: token ids and an attention mask
    [rows, 6] int64, a mean of embeddings over the real tokens, 3 classes' probabilities."""
    rng = np.random.default_rng(3)
    weights = [
        numpy_helper.from_array(rng.normal(size=(10, 4)).astype(np.float32), "embedding"),
        numpy_helper.from_array(rng.normal(size=(4, 3)).astype(np.float32), "head"),
        numpy_helper.from_array(np.array([2], np.int64), "axis2"),
        numpy_helper.from_array(np.array([1], np.int64), "axis1"),
    ]
    nodes = [
        helper.make_node("Gather", ["embedding", "input_ids"], ["embedded"]),
        helper.make_node("Cast", ["attention_mask"], ["maskf"], to=TensorProto.FLOAT),
        helper.make_node("Unsqueeze", ["maskf", "axis2"], ["mask3"]),
        helper.make_node("Mul", ["embedded", "mask3"], ["masked"]),
        helper.make_node("ReduceSum", ["masked", "axis1"], ["summed"], keepdims=0),
        helper.make_node("ReduceSum", ["maskf", "axis1"], ["count"], keepdims=1),
        helper.make_node("Div", ["summed", "count"], ["pooled"]),
        helper.make_node("MatMul", ["pooled", "head"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probs"], axis=1),
    ]
    ids = [
        helper.make_tensor_value_info(name, TensorProto.INT64, ["rows", 6])
        for name in ("input_ids", "attention_mask")
    ]
    graph = helper.make_graph(
        nodes, "text", ids, [helper.make_tensor_value_info("probs", TensorProto.FLOAT, None)],
        weights,
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    helper.set_model_props(model, {"classes": json.dumps(CLASSES)})
    return bytes(model.SerializeToString())


def text_rows(rows: int, seed: int = 5) -> dict[str, np.ndarray]:
    """``rows`` token sequences for :func:`text_graph`: ids 1..9, a mask with the first token
    always real."""
    rng = np.random.default_rng(seed)
    mask = (rng.random((rows, 6)) > 0.3).astype(np.int64)
    mask[:, 0] = 1
    return {"input_ids": rng.integers(1, 10, (rows, 6)), "attention_mask": mask}
