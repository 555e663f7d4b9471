"""Train a small text classifier and export it as ONNX, as a PyTorch script exporting a
Hugging Face style model would (model.flavor: onnx): two int64 inputs ``input_ids`` and
``attention_mask`` [rows, 12], one output ``probs`` [rows, 3].

The graph is an embedding lookup (Gather from a [64, D] table) -> the mean of the real tokens'
vectors (the mask cast to float, Unsqueeze, Mul, ReduceSum over the sequence, divided by the
mask's ReduceSum, at least 1e-9 as in sentence-transformers' mean pooling) -> Gemm -> Softmax,
written with the onnx helper API (opset 17: Unsqueeze's and ReduceSum's axes are inputs), so
the example needs neither torch nor tensorflow. The embedding is a seeded random normal table;
only the Gemm is fitted: scikit-learn's LogisticRegression on the pooled vectors, computed here
in numpy exactly as the graph computes them. The class names, in the Gemm's order, go in the
model's metadata (``classes``, a JSON list). metrics.json has the 5-fold cross-validated
accuracy on the training rows. Fixed seeds and one BLAS thread: two runs write the same bytes.
The data is written by prepare_data.py. Params (MLOPS_PARAMS, JSON): C, D.
"""

import json
import os
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_score
from threadpoolctl import threadpool_limits

SEED, VOCAB, LENGTH = 0, 64, 12
# One BLAS thread: the same sums in the same order whatever the machine's cores (a threaded
# BLAS can write other bytes), and no oversubscription on a busy runner.
threadpool_limits(1)


def features(input_ids: np.ndarray, attention_mask: np.ndarray, table: np.ndarray) -> np.ndarray:
    """What the graph feeds its Gemm: the mean of the real tokens' embedding vectors."""
    mask = attention_mask.astype(np.float32)
    summed = (table[input_ids] * mask[:, :, None]).sum(axis=1)
    return summed / np.maximum(mask.sum(axis=1, keepdims=True), np.float32(1e-9))


params = json.loads(os.environ.get("MLOPS_PARAMS", "{}"))
dim = int(params.get("D", 32))
with np.load("data/train.npz", allow_pickle=False) as train:
    input_ids, attention_mask, label = train["input_ids"], train["attention_mask"], train["label"]

table = np.random.default_rng(SEED).normal(0.0, 1.0, size=(VOCAB, dim)).astype(np.float32)
X = features(input_ids, attention_mask, table)
fitted = LogisticRegression(C=float(params.get("C", 1.0)), max_iter=2000)
cv_accuracy = cross_val_score(fitted, X, label, cv=5, scoring="accuracy").mean()
fitted.fit(X, label)


def ints(name: str, values: list[int]) -> onnx.TensorProto:
    return numpy_helper.from_array(np.array(values, dtype=np.int64), name)


initializers = [
    numpy_helper.from_array(table, "embedding"),  # [vocabulary, D]
    ints("token_axis", [2]),
    ints("sequence_axis", [1]),
    numpy_helper.from_array(np.array(1e-9, dtype=np.float32), "min_count"),
    numpy_helper.from_array(fitted.coef_.astype(np.float32), "gemm_weight"),  # [classes, D]
    numpy_helper.from_array(fitted.intercept_.astype(np.float32), "gemm_bias"),
]
graph = helper.make_graph(
    [
        helper.make_node("Gather", ["embedding", "input_ids"], ["vectors"], axis=0),
        helper.make_node("Cast", ["attention_mask"], ["mask"], to=TensorProto.FLOAT),
        helper.make_node("Unsqueeze", ["mask", "token_axis"], ["mask_3d"]),
        helper.make_node("Mul", ["vectors", "mask_3d"], ["masked"]),
        helper.make_node("ReduceSum", ["masked", "sequence_axis"], ["summed"], keepdims=0),
        helper.make_node("ReduceSum", ["mask", "sequence_axis"], ["count_raw"], keepdims=1),
        helper.make_node("Max", ["count_raw", "min_count"], ["count"]),
        helper.make_node("Div", ["summed", "count"], ["pooled"]),
        helper.make_node("Gemm", ["pooled", "gemm_weight", "gemm_bias"], ["logits"], transB=1),
        helper.make_node("Softmax", ["logits"], ["probs"], axis=1),
    ],
    "text-mean-pooling",
    [
        helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["rows", LENGTH]),
        helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["rows", LENGTH]),
    ],
    [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["rows", len(fitted.classes_)])],
    initializers,
)
model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
model.ir_version = 8
helper.set_model_props(model, {"classes": json.dumps(fitted.classes_.tolist())})
onnx.checker.check_model(model, full_check=True)

Path("outputs").mkdir(exist_ok=True)
onnx.save(model, "outputs/model.onnx")
Path("outputs/metrics.json").write_text(json.dumps({"cv_accuracy": cv_accuracy}))
