"""Train a softmax classifier and export it as ONNX, as a PyTorch or Keras script would
(model.flavor: onnx): one float input ``x`` [rows, 4], one output ``probs`` [rows, 3].

The weights are fitted with scikit-learn's LogisticRegression, then written as a plain ONNX
graph (MatMul, Add, Softmax) with the onnx helper API, so the example needs neither torch nor
tensorflow. The class names go in the model's metadata (``classes``, a JSON list); without
them mlops-ci labels rows with the class index. With PyTorch the export is
``torch.onnx.export(net, sample, "outputs/model.onnx", input_names=["x"],
output_names=["probs"], dynamic_axes={"x": {0: "rows"}, "probs": {0: "rows"}})``.
The data is examples/iris' (written by its prepare_data.py). Params (MLOPS_PARAMS, JSON): C.
"""

import json
import os
from pathlib import Path

import numpy as np
import onnx
import pandas as pd
from onnx import TensorProto, helper, numpy_helper
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_score

params = json.loads(os.environ.get("MLOPS_PARAMS", "{}"))
train = pd.read_csv("data/train.csv")
X, y = train.drop(columns=["species"]), train["species"]
fitted = LogisticRegression(C=float(params.get("C", 1.0)), max_iter=1000)
cv_accuracy = cross_val_score(fitted, X, y, cv=5, scoring="accuracy").mean()
fitted.fit(X, y)

weights = numpy_helper.from_array(fitted.coef_.T.astype(np.float32), "weights")
bias = numpy_helper.from_array(fitted.intercept_.astype(np.float32), "bias")
graph = helper.make_graph(
    [
        helper.make_node("MatMul", ["x", "weights"], ["logits_raw"]),
        helper.make_node("Add", ["logits_raw", "bias"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probs"], axis=1),
    ],
    "softmax-classifier",
    [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["rows", X.shape[1]])],
    [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["rows", len(fitted.classes_)])],
    [weights, bias],
)
model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
model.ir_version = 8
helper.set_model_props(model, {"classes": json.dumps(fitted.classes_.tolist())})
onnx.checker.check_model(model)

Path("outputs").mkdir(exist_ok=True)
onnx.save(model, "outputs/model.onnx")
Path("outputs/metrics.json").write_text(json.dumps({"cv_accuracy": cv_accuracy}))
