"""Train a small convolutional digit classifier and export it as ONNX, as a PyTorch script
would (model.flavor: onnx): one float input ``pixels`` [rows, 1, 8, 8], one output ``probs``
[rows, 10].

The graph is Conv (``filters`` fixed 3x3 filters, pads 1) -> Relu -> MaxPool (2x2, stride 2)
-> Flatten -> Gemm -> Softmax, written with the onnx helper API, so the example needs neither
torch nor tensorflow. The filters and their biases are seeded random normals (a random-feature
network); only the Gemm is fitted: scikit-learn's LogisticRegression on the pooled features,
computed here in numpy exactly as the graph computes them. The class names (the digits) go in
the model's metadata (``classes``, a JSON list). metrics.json has the 5-fold cross-validated
accuracy on the training rows. Fixed seeds and one BLAS thread: two runs write the same bytes.
The data is written by prepare_data.py. Params (MLOPS_PARAMS, JSON): C, filters.
"""

import json
import os
from pathlib import Path

import numpy as np
import onnx
from numpy.lib.stride_tricks import sliding_window_view
from onnx import TensorProto, helper, numpy_helper
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_score
from threadpoolctl import threadpool_limits

SEED = 0
# One BLAS thread: the same sums in the same order whatever the machine's cores (a threaded
# BLAS wrote other bytes here), and no oversubscription on a busy runner.
threadpool_limits(1)


def features(pixels: np.ndarray, kernels: np.ndarray, biases: np.ndarray) -> np.ndarray:
    """What the graph feeds its Gemm: Conv (pads 1) -> Relu -> MaxPool 2x2 -> Flatten."""
    padded = np.pad(pixels[:, 0], ((0, 0), (1, 1), (1, 1)))
    windows = sliding_window_view(padded, (3, 3), axis=(1, 2))  # [rows, 8, 8, 3, 3]
    conv = np.einsum("nhwij,fij->nfhw", windows, kernels[:, 0]) + biases[:, None, None]
    relu = np.maximum(conv, 0.0)
    rows, count, height, width = relu.shape
    pooled = relu.reshape(rows, count, height // 2, 2, width // 2, 2).max(axis=(3, 5))
    return pooled.reshape(rows, -1)


params = json.loads(os.environ.get("MLOPS_PARAMS", "{}"))
filters = int(params.get("filters", 8))
with np.load("data/train.npz", allow_pickle=False) as train:
    pixels, label = train["pixels"], train["label"]

rng = np.random.default_rng(SEED)
kernels = rng.normal(0.0, 1.0, size=(filters, 1, 3, 3)).astype(np.float32)
biases = rng.normal(0.0, 0.1, size=filters).astype(np.float32)
X = features(pixels.astype(np.float64), kernels.astype(np.float64), biases.astype(np.float64))
fitted = LogisticRegression(C=float(params.get("C", 1.0)), max_iter=2000)
cv_accuracy = cross_val_score(fitted, X, label, cv=5, scoring="accuracy").mean()
fitted.fit(X, label)

initializers = [
    numpy_helper.from_array(kernels, "conv_weight"),
    numpy_helper.from_array(biases, "conv_bias"),
    numpy_helper.from_array(fitted.coef_.astype(np.float32), "gemm_weight"),  # [classes, in]
    numpy_helper.from_array(fitted.intercept_.astype(np.float32), "gemm_bias"),
]
graph = helper.make_graph(
    [
        helper.make_node(
            "Conv",
            ["pixels", "conv_weight", "conv_bias"],
            ["conv"],
            kernel_shape=[3, 3],
            pads=[1, 1, 1, 1],
        ),
        helper.make_node("Relu", ["conv"], ["relu"]),
        helper.make_node("MaxPool", ["relu"], ["pooled"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Flatten", ["pooled"], ["flat"], axis=1),
        helper.make_node("Gemm", ["flat", "gemm_weight", "gemm_bias"], ["logits"], transB=1),
        helper.make_node("Softmax", ["logits"], ["probs"], axis=1),
    ],
    "digits-cnn",
    [helper.make_tensor_value_info("pixels", TensorProto.FLOAT, ["rows", 1, 8, 8])],
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
