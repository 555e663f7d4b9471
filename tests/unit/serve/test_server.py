"""Versions and their weights as `mlops-ci serve` takes them on the command line."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlops_ci.serve.server import Weighted, parse_weighted, split_weights


def test_weights_on_the_command_line() -> None:
    assert parse_weighted("dir/model=90", "--model-dir") == Weighted("dir/model", 90.0)
    assert parse_weighted("@production", "--version") == Weighted("@production", None)
    with pytest.raises(Exception, match="must be a number"):
        parse_weighted("@candidate=ten", "--version")


def test_split_weights_all_or_none(tmp_path: Path) -> None:
    from mlops_ci.serve.model import ModelSpec

    def spec(v: str) -> ModelSpec:
        return ModelSpec("m", v, "onnx", tmp_path, (), "x")

    assert split_weights([(spec("1"), None), (spec("2"), None)]) == {"1": 1.0, "2": 1.0}
    with pytest.raises(Exception, match="to every version"):
        split_weights([(spec("1"), 5.0), (spec("2"), None)])
    with pytest.raises(Exception, match="given twice"):
        split_weights([(spec("1"), None), (spec("1"), None)])
