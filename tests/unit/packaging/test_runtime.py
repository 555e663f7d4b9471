"""ONNX or native, decided once: under package.onnx auto a converted graph onnxruntime cannot
load or run here falls back to the native model with one line saying what failed; under true
the same failure is an exit-2 error naming it. The graphs are real and so is onnxruntime;
the native model is a stand-in with the runner's face (``to_onnx``, its answers)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from onnx import TensorProto, helper

from mlops_ci.config.types import Config, load_config
from mlops_ci.packaging import convert, runtime
from tests.support.configs import VALID, write

pytestmark = pytest.mark.timeout(60)

FRAME = pd.DataFrame({"x": np.arange(6, dtype=np.float64), "y": np.ones(6)})


def config(tmp_path: Path, onnx: str) -> Config:
    text = VALID + f"package:\n  onnx: {onnx}\n"
    return load_config(write(tmp_path, text))


def graph(middle: list[Any], extra: list[Any] | None = None) -> bytes:
    """input [rows, 2] → ``middle`` nodes → a regressor's ``variable`` [rows, 1]."""
    model = helper.make_model(
        helper.make_graph(
            middle,
            "g",
            [helper.make_tensor_value_info("input", TensorProto.FLOAT, [None, 2])],
            [helper.make_tensor_value_info("variable", TensorProto.FLOAT, [None, 1])],
            extra or [],
        ),
        opset_imports=[helper.make_opsetid("", 17)],
    )
    model.ir_version = 8
    return bytes(model.SerializeToString())


def first_column() -> list[Any]:
    return [helper.make_node("Slice", ["input", "s", "e", "a"], ["variable"])]


def bounds() -> list[Any]:
    return [
        helper.make_tensor(name, TensorProto.INT64, [1], [value])
        for name, value in (("s", 0), ("e", 1), ("a", 1))
    ]


class Native:
    """What package holds of a native regressor in the model runner: its conversion, made
    in the runner's child (here: the graph given), and its answers (the first column)."""

    model_kind = "regression"
    model_is_classifier = False

    def __init__(self, onnx: bytes) -> None:
        self.onnx = onnx

    def to_onnx(self, features: Any, target_opset: int | None) -> tuple[bytes, str]:
        return self.onnx, convert.MATRIX

    def outputs(self) -> convert.Outputs:
        return convert.Outputs(None, FRAME[["x"]].to_numpy())


def decide(tmp_path: Path, onnx: bytes, mode: str = "auto") -> Any:
    native = Native(onnx)
    return runtime.try_onnx(config(tmp_path, mode), native, native.outputs(), FRAME)


def test_a_graph_that_loads_and_runs_with_parity_is_served(tmp_path: Path) -> None:
    converted, parity, scorer = decide(tmp_path, graph(first_column(), bounds()))
    assert parity.passed and parity.max_abs_diff == 0.0
    assert scorer(FRAME.head(2)).scores.tolist() == [[0.0], [1.0]]


def test_a_graph_onnxruntime_cannot_load_falls_back_saying_why(tmp_path: Path) -> None:
    unknown = [helper.make_node("NoSuchOperator", ["input"], ["variable"])]
    note = decide(tmp_path, graph(unknown))
    assert isinstance(note, str) and "\n" not in note
    assert note.startswith("ONNX: not used — onnxruntime cannot load the converted model here: ")
    assert "NoSuchOperator" in note
    assert note.endswith("; serving the native model (package.onnx: auto)")
    assert "[ONNXRuntimeError]" not in note  # onnxruntime's code prefix is dropped


def test_a_graph_onnxruntime_cannot_run_falls_back_saying_why(tmp_path: Path) -> None:
    """It loads, and fails on the rows: a reshape into 4 columns of rows of 2 values that
    works for an even number of rows alone (6 evaluation rows, then 1)."""
    shape = helper.make_tensor("shape", TensorProto.INT64, [2], [-1, 4])
    nodes = [
        helper.make_node("Reshape", ["input", "shape"], ["wide"]),
        helper.make_node("Slice", ["wide", "s", "e", "a"], ["first"]),
        helper.make_node("Reshape", ["first", "back"], ["variable"]),
    ]
    back = helper.make_tensor("back", TensorProto.INT64, [2], [-1, 1])
    note = decide(tmp_path, graph(nodes, [shape, back, *bounds()]))
    assert isinstance(note, str) and "\n" not in note
    assert note.startswith("ONNX: not used — onnxruntime cannot run the converted model here: ")


def test_under_onnx_true_a_failing_graph_is_an_input_error_naming_why(tmp_path: Path) -> None:
    unknown = [helper.make_node("NoSuchOperator", ["input"], ["variable"])]
    with pytest.raises(convert.OnnxFailed) as err:
        decide(tmp_path, graph(unknown), mode="true")
    assert str(err.value).startswith("onnxruntime cannot load the converted model here: ")
    assert err.value.hint and "package.onnx" in err.value.hint


def test_onnxruntime_errors_lose_their_code_prefix_and_source_locations() -> None:
    said = Exception(
        "[ONNXRuntimeError] : 1 : FAIL : Exception during initialization: "
        "/onnxruntime_src/onnxruntime/core/providers/cpu/text/string_normalizer.cc:235 "
        "onnxruntime::StringNormalizer::Locale::Locale(const std::string&)::<lambda()> "
        "Failed to construct locale with name:en_US.UTF-8:locale::facet::_S_create_c_locale "
        "name not valid:Please, install necessary language-pack-XX and configure locales\nmore"
    )
    assert convert.runtime_reason(said) == (
        "Exception during initialization: Failed to construct locale with name:en_US.UTF-8:"
        "locale::facet::_S_create_c_locale name not valid:Please, install necessary "
        "language-pack-XX and configure locales"
    )
