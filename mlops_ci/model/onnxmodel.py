"""An ONNX model exported from any framework (``model.flavor: onnx``), with scikit-learn's face.

compare scores it like any model (``predict``, ``predict_proba``, ``classes_``), and package
serves it after :func:`standardize` has given it the inputs and outputs every other packaged
model has, so serving, batch scoring and drift need nothing of their own:

- inputs: one float32 ``input`` [rows, features] (a graph with one 2-D float input, whatever
  its name), or one input per column named like the evaluation data's columns;
- outputs: ``label`` and ``probabilities`` for a classifier, ``variable`` [rows, outputs]
  otherwise.

Which outputs hold what: outputs already named so are taken as they are; otherwise a
classifier's scores are its first float output of shape [rows, classes] (taken as
probabilities, as a softmax output is) and its label is its first integer or text output, or
the arg-max of the scores. The class names are the model's metadata property ``classes`` (a
JSON list, which the training script sets), else the indices 0..k-1. ``mlops.task`` in the
metadata records the task the model was logged for.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from mlops_ci.errors import InputError
from mlops_ci.model.features import string_values
from mlops_ci.model.tensors import Tensors, TensorSchema

TASK_PROP, CLASSES_PROP = "mlops.task", "classes"
_FLOAT = "tensor(float)"


class OnnxModel:
    """A user's ONNX graph on onnxruntime; picklable (it keeps the bytes, not the session)."""

    def __init__(self, data: bytes, task: str | None = None, where: str = "the ONNX model"):
        import onnx

        self.data = data
        self.where = where
        try:
            proto = onnx.load_from_string(data)
        except Exception as err:  # not an ONNX file at all
            raise InputError(f"{where}: not an ONNX model ({str(err).splitlines()[0]})") from None
        props = {p.key: p.value for p in proto.metadata_props}
        self.task = task or props.get(TASK_PROP, "classification")
        self.classes_ = _classes(props.get(CLASSES_PROP), where)
        self._session: Any = None
        inputs = self.session.get_inputs()
        self.tensors: TensorSchema | None = None  # a tensor model's inputs (issue 43)
        self.columns: tuple[str, ...] | None = None  # None: one [rows, features] tensor
        if not _is_table(inputs):
            self.tensors = TensorSchema.of_graph(inputs, where)
        elif len(inputs) > 1 or len(inputs[0].shape) != 2 or inputs[0].type != _FLOAT:
            for i in inputs:
                if i.type not in (_FLOAT, "tensor(string)"):
                    raise InputError(
                        f"{where}: input '{i.name}' is {i.type}; mlops-ci feeds a column as "
                        "float32 numbers or strings",
                        hint="export the model with float32 inputs",
                    )
            self.columns = tuple(i.name for i in inputs)
            self.feature_names_in_ = np.asarray(self.columns, dtype=object)
        self.outputs = _roles(self.session.get_outputs(), self.task, where)

    @staticmethod
    def from_file(path: Path, task: str | None = None) -> OnnxModel:
        return OnnxModel(path.read_bytes(), task, str(path.name))

    @property
    def session(self) -> Any:
        if self._session is None:
            import onnxruntime as ort

            refuse_external_data(self.data, self.where)
            options = ort.SessionOptions()
            options.log_severity_level = 4  # its failures are raised, named: nothing on stderr
            try:
                self._session = ort.InferenceSession(
                    self.data, options, providers=["CPUExecutionProvider"]
                )
            except Exception as err:
                raise InputError(
                    f"{self.where}: onnxruntime cannot load it: {str(err).splitlines()[0]}"
                ) from None
        return self._session

    def __getstate__(self) -> dict[str, Any]:
        return {"data": self.data, "task": self.task, "where": self.where}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["data"], state["task"], state["where"])  # type: ignore[misc]

    def __getattr__(self, name: str) -> Any:
        # Regressors have no predict_proba: is_classifier() looks for it.
        if name == "predict_proba" and self.__dict__.get("task") == "classification":
            return self._predict_proba
        raise AttributeError(name)

    def _feeds(self, features: Any) -> dict[str, Any]:
        if self.tensors is not None:
            return _tensors(features, self.tensors, self.where).for_model(self.tensors)
        if isinstance(features, Tensors):
            takes = ", ".join(f"{i.name} {i.shape} {i.type}" for i in self.session.get_inputs())
            raise InputError(
                f"{features.where}: holds arrays, but {self.where} takes a table ({takes})",
                hint="evaluate.data: the CSV or Parquet of the model's columns",
            )
        if self.columns is None:
            x = np.ascontiguousarray(np.asarray(features, dtype=np.float32))
            return {self.session.get_inputs()[0].name: x}
        feeds = {}
        for i in self.session.get_inputs():
            column = features[i.name].to_numpy()
            if i.type == _FLOAT:
                feeds[i.name] = column.astype(np.float32).reshape(-1, 1)
            else:
                feeds[i.name] = string_values(column).reshape(-1, 1)
        return feeds

    def _run(self, features: Any) -> dict[str, Any]:
        names = [o.name for o in self.session.get_outputs()]
        if self.tensors is None:
            return dict(zip(names, self.session.run(None, self._feeds(features)), strict=True))
        rows = _tensors(features, self.tensors, self.where)
        rows.fit_shapes(self.tensors)
        step = rows_per_call(rows)
        try:
            # memory-mapped rows are read a call's worth at a time
            parts = [self.session.run(None, self._feeds(part)) for part in rows.calls(step)]
        except Exception as err:  # onnxruntime refusing values: an id beyond the vocabulary
            if not from_onnxruntime(err):
                raise
            raise InputError(f"onnxruntime refused the values: {runtime_reason(err)}") from None
        return {n: np.concatenate([p[k] for p in parts]) for k, n in enumerate(names)}

    def scored(self, features: Any) -> tuple[npt.NDArray[Any] | None, npt.NDArray[np.float64]]:
        """(labels, probabilities) of a classifier or (None, values [rows, n]) of a regressor,
        from one pass over the rows (``predict`` and ``predict_proba`` each make one)."""
        out = self._run(features)
        scores = np.asarray(out[self.outputs["scores"]], np.float64)
        if self.task != "classification":
            return None, scores.reshape(len(scores), -1)
        return self._labels(out, scores), scores

    def _predict_proba(self, features: Any) -> npt.NDArray[np.float64]:
        out = self._run(features)
        return np.asarray(out[self.outputs["scores"]], np.float64)

    def predict(self, features: Any) -> npt.NDArray[Any]:
        out = self._run(features)
        if self.task != "classification":  # [rows], or [rows, outputs] where there are several
            values = np.asarray(out[self.outputs["scores"]], np.float64)
            values = values.reshape(len(values), -1)
            return values[:, 0] if values.shape[1] == 1 else values
        return self._labels(out, np.asarray(out[self.outputs["scores"]]))

    def _labels(self, out: dict[str, Any], scores: npt.NDArray[Any]) -> npt.NDArray[Any]:
        if self.outputs.get("label"):
            return np.asarray(out[self.outputs["label"]]).reshape(-1)
        index = scores.argmax(axis=1)
        return np.asarray(self.classes_[index] if self.classes_ is not None else index)


def _is_table(inputs: list[Any]) -> bool:
    """The inputs of a table model: one 2-D float input [rows, features], or one input per
    column [rows, 1] of floats or strings. Anything else takes tensors (``model.tensors``)."""
    if len(inputs) == 1 and len(inputs[0].shape) == 2 and inputs[0].type == _FLOAT:
        return True
    return all(
        len(i.shape) == 2 and i.shape[1] == 1 and i.type in (_FLOAT, "tensor(string)")
        for i in inputs
    )


# A tensor model's rows per session call: about this much input. A network's intermediates are
# many times its input: `mlops-ci compare` on a conv net over 500,000 8x8 images (a 144 MB .npz)
# peaked at 4.0 GB of RSS with 64 MiB a call, 0.78 GB with 1 MiB (2,000,000 images, 576 MB:
# 5.6 GB and 2.1 GB); onnxruntime's own cost a call is microseconds.
CALL_BYTES = 1024 * 1024


def _tensors(features: Any, schema: TensorSchema, where: str) -> Tensors:
    """A tensor model's rows: named arrays (a request's lists are checked first)."""
    if isinstance(features, Tensors):
        return features
    if isinstance(features, Mapping):
        return Tensors(schema.check(features, where), where)
    raise InputError(
        f"{where}: takes tensors ({schema.describe()}), not a table",
        hint="evaluate.data: an .npz holding an array per input name and the target",
    )


def from_onnxruntime(err: BaseException) -> bool:
    """An error onnxruntime raised running a graph (its pybind11 exception types)."""
    return type(err).__module__.startswith("onnxruntime")


def runtime_reason(err: BaseException, width: int = 300) -> str:
    """onnxruntime's error in one line without its code prefix and C++ source locations
    (``[ONNXRuntimeError] : 1 : FAIL : ... /onnxruntime_src/...cc:235 onnxruntime::...``)."""
    text = str(err).strip()
    line = text.splitlines()[0] if text else type(err).__name__
    line = re.sub(r"^\[ONNXRuntimeError\] : \d+ : \w+ : ", "", line)
    line = re.sub(r"\s*/\S*onnxruntime_src/\S+:\d+", "", line)
    line = re.sub(r"\s*onnxruntime::[^\s(]*(\([^)]*\))?(::<lambda\(\)>)?", "", line)
    return shortened(" ".join(line.split()), width)


def shortened(text: str, width: int) -> str:
    """``text`` at most ``width`` characters, cut after a whole word with an ellipsis."""
    if len(text) <= width:
        return text
    cut = text[: width - 1]
    space = cut.rfind(" ")
    return (cut[:space] if space > width // 2 else cut).rstrip(" ,;:") + "…"


def rows_per_call(rows: Tensors) -> int:
    per_row = sum(a.dtype.itemsize * int(np.prod(a.shape[1:])) for a in rows.arrays.values())
    return max(1, CALL_BYTES // max(per_row, 1))


def _classes(raw: str | None, where: str) -> npt.NDArray[Any] | None:
    if raw is None:
        return None
    try:
        values = json.loads(raw)
    except ValueError:
        values = None
    if not isinstance(values, list) or not values:
        raise InputError(f"{where}: metadata 'classes' must be a JSON list of class names")
    return np.asarray(values)


def _roles(outputs: list[Any], task: str, where: str) -> dict[str, str]:
    """Which graph output holds the label and which the scores (see the module docstring)."""
    names = {o.name: o for o in outputs}
    floats = [o for o in outputs if o.type in (_FLOAT, "tensor(double)")]
    if task == "classification":
        if "probabilities" in names:
            return {"scores": "probabilities", "label": "label" if "label" in names else ""}
        scores = [o for o in floats if len(o.shape) == 2]
        if not scores:
            raise InputError(
                f"{where}: a classifier needs a float output of shape [rows, classes] "
                f"(outputs: {', '.join(names)})"
            )
        labels = [o for o in outputs if o.type in ("tensor(int64)", "tensor(string)")]
        return {"scores": scores[0].name, "label": labels[0].name if labels else ""}
    if "variable" in names:
        return {"scores": "variable"}
    if not floats:
        raise InputError(f"{where}: a regressor needs a float output (outputs: {', '.join(names)})")
    return {"scores": floats[0].name}


def standardize(model: OnnxModel, columns: tuple[str, ...]) -> tuple[bytes, str]:
    """(the graph with mlops-ci's input and output names, its layout: matrix | columns |
    tensors, whose inputs keep the graph's names)."""
    import onnx
    from onnx import TensorProto, helper

    proto = onnx.load_from_string(model.data)
    graph = proto.graph
    layout = "columns"
    if model.tensors is not None:
        layout = "tensors"  # the graph's own inputs, by name (model/tensors.py)
    elif model.columns is None:
        layout = "matrix"
        rename_tensor(graph, graph.input[0].name, "input")
    else:
        missing = [c for c in model.columns if c not in columns]
        if missing:
            raise InputError(
                f"{model.where}: input(s) {', '.join(missing)} are not columns of evaluate.data"
            )
    roles, nodes, outputs = model.outputs, [], []
    if model.task == "classification":
        scores = roles["scores"]
        nodes.append(helper.make_node("Cast", [scores], ["probabilities"], to=TensorProto.FLOAT))
        label = roles.get("label")
        if label:
            nodes.append(helper.make_node("Identity", [label], ["label"]))
            label_type = _output_type(graph, label)
        else:
            nodes.append(
                helper.make_node("ArgMax", [scores], ["mlops_label_index"], axis=1, keepdims=0)
            )
            label_type = TensorProto.INT64
            if model.classes_ is not None:
                classes = [str(c) for c in model.classes_.tolist()]
                nodes.append(_label_encoder("mlops_label_index", classes))
                label_type = TensorProto.STRING
                _ml_opset(proto)
            else:
                nodes.append(helper.make_node("Identity", ["mlops_label_index"], ["label"]))
        outputs = [
            helper.make_tensor_value_info("label", label_type, [None]),
            helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [None, None]),
        ]
    else:
        nodes.append(helper.make_node("Cast", [roles["scores"]], ["mlops_values"], to=1))
        nodes.append(helper.make_node("Flatten", ["mlops_values"], ["variable"], axis=1))
        outputs = [helper.make_tensor_value_info("variable", TensorProto.FLOAT, [None, None])]
    taken = {o.name for o in outputs}
    if any(o.name in taken for o in graph.output) or any(
        out in taken for node in graph.node for out in node.output
    ):
        _rename_outputs(graph, taken)
        return standardize(OnnxModel(proto.SerializeToString(), model.task, model.where), columns)
    graph.node.extend(nodes)
    del graph.output[:]
    graph.output.extend(outputs)
    try:
        onnx.checker.check_model(proto)
    except Exception as err:
        raise InputError(f"{model.where}: cannot be standardized: {str(err)[:200]}") from None
    return proto.SerializeToString(), layout


def _output_type(graph: Any, name: str) -> int:
    for o in graph.output:
        if o.name == name:
            return int(o.type.tensor_type.elem_type)
    return 7  # INT64


def _label_encoder(source: str, classes: list[str]) -> Any:
    from onnx import helper

    return helper.make_node(
        "LabelEncoder",
        [source],
        ["label"],
        domain="ai.onnx.ml",
        keys_int64s=list(range(len(classes))),
        values_strings=classes,
        default_string="",
    )


def _ml_opset(proto: Any) -> None:
    from onnx import helper

    for opset in proto.opset_import:
        if opset.domain == "ai.onnx.ml":
            opset.version = max(opset.version, 2)
            return
    proto.opset_import.append(helper.make_opsetid("ai.onnx.ml", 2))


def rename_tensor(graph: Any, old: str, new: str) -> None:
    """Give the tensor ``old`` the name ``new`` wherever the graph names it."""
    if old == new:
        return
    for value in (*graph.input, *graph.output, *graph.value_info):
        if value.name == old:
            value.name = new
    for node in graph.node:
        for field in (node.input, node.output):
            for i, name in enumerate(field):
                if name == old:
                    field[i] = new


def _rename_outputs(graph: Any, taken: set[str]) -> None:
    """Move the user's tensors named label/probabilities/variable out of the way."""
    names = {o.name for o in graph.output} | {out for n in graph.node for out in n.output}
    for name in names & taken:
        rename_tensor(graph, name, f"user_{name}")


def refuse_external_data(data: bytes | str, where: str) -> None:
    """An ONNX graph is read in mlops-ci's process as data; a tensor whose bytes live in an
    external file (``/proc/self/environ``, say) would be read from this process's files:
    onnxruntime 1.32 refuses paths outside the model's folder, but from bytes it reads a
    relative path from the working directory, and older ones may not check at all. Read from
    the protobuf wire format, without the onnx package (~50 ms of every `batch-score`): every
    tensor onnx's own ``_get_all_tensors`` visits (initializers, node attributes, subgraphs,
    functions), sparse and training ones too."""
    try:
        model = data if isinstance(data, bytes) else Path(data).read_bytes()
        external = _external_tensor(memoryview(model))
    except (OSError, ValueError):  # not ONNX (or not there): onnxruntime says so its own way
        return
    if external:
        raise InputError(f"{where}: the ONNX graph keeps tensors in external files; embed them")


# The fields of onnx.proto that hold messages on the way to a TensorProto (message -> field
# number -> the message it holds); a TensorProto's data_location is field 14 (EXTERNAL = 1).
_TENSOR, _DATA_LOCATION, _EXTERNAL = "tensor", 14, 1
_HOLDS = {
    "model": {7: "graph", 20: "training", 25: "function"},
    "training": {1: "graph", 2: "graph"},
    "graph": {1: "node", 5: _TENSOR, 15: "sparse"},
    "function": {7: "node"},
    "node": {5: "attribute"},
    "attribute": {5: _TENSOR, 6: "graph", 10: _TENSOR, 11: "graph", 22: "sparse", 23: "sparse"},
    "sparse": {1: _TENSOR, 2: _TENSOR},
}


def _external_tensor(model: memoryview) -> bool:
    """Whether a ModelProto holds a tensor with ``data_location: EXTERNAL``; ValueError where
    the bytes are not a protobuf message (which onnxruntime refuses as well)."""
    stack = [("model", model)]
    while stack:
        kind, buf = stack.pop()
        for number, value in _fields(buf, runs=kind != _TENSOR):
            if kind == _TENSOR:
                if number == _DATA_LOCATION and value == _EXTERNAL:
                    return True
            elif isinstance(value, memoryview) and number in _HOLDS[kind]:
                stack.append((_HOLDS[kind][number], value))
    return False


def _fields(buf: memoryview, runs: bool = True) -> Iterator[tuple[int, int | memoryview | None]]:
    """(field number, value) of each field of one message: a varint's value, a
    length-delimited field's bytes, None for fixed-width fields and groups (skipped). A run of
    one repeated number field (a tree ensemble's thousands of floats and ints) is passed over
    by a regular expression, in C, where ``runs``: none of its values but the first is seen."""
    at, end, groups = 0, len(buf), 0
    while at < end:
        key, at = _varint(buf, at)
        number, wire = key >> 3, key & 7
        value: int | memoryview | None = None
        if wire == 0:
            value, at = _varint(buf, at)
        elif wire == 2:
            length, at = _varint(buf, at)
            value, at = buf[at : at + length], at + length
        elif wire in (1, 5):
            at += 8 if wire == 1 else 4
        elif wire in (3, 4):  # a group's start and end (deprecated): skipped whole
            groups += 1 if wire == 3 else -1
        else:
            raise ValueError(f"wire type {wire}")
        if at > end or groups < 0 or number == 0:
            raise ValueError("not a protobuf message")
        if not groups and wire != 4:
            yield number, value
        if runs and wire in (0, 1, 5) and key < 0x80:
            run = _run(key).match(buf, at)  # more of the same field
            at = run.end() if run else at


def _run(key: int) -> re.Pattern[bytes]:
    """A run of fields keyed ``key`` (one byte) holding numbers: varints or fixed width."""
    found = _RUNS.get(key)
    if found is None:
        tag = re.escape(bytes([key]))
        body = {0: rb"[\x80-\xff]{0,9}[\x00-\x7f]", 1: rb".{8}", 5: rb".{4}"}[key & 7]
        found = _RUNS[key] = re.compile(b"(?:" + tag + body + b")+", re.DOTALL)
    return found


_RUNS: dict[int, re.Pattern[bytes]] = {}


def _varint(buf: memoryview, at: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if at >= len(buf) or shift > 63:
            raise ValueError("a truncated varint")
        byte = buf[at]
        value |= (byte & 0x7F) << shift
        at, shift = at + 1, shift + 7
        if byte < 0x80:
            return value, at
