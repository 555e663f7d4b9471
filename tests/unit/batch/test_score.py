"""batch-score's feature matrix: typed and text columns, per-row errors, the contract's gaps."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from mlops_ci.batch.score import _most_probable, features_matrix
from mlops_ci.packaging import convert


def test_features_matrix_converts_typed_and_text_columns_and_names_the_first_bad_column() -> None:
    table = pa.table(
        {
            "a": pa.array([1.5, None, 2.0, 3.0, 4.0, float("inf"), 7], pa.float64()),
            "b": pa.array(["0.25", "1", " 2.5 ", "abc", "1e39", "abc", "1e400"]),
            "n": pa.array([1, 2, 3, 4, 5, 6, 7], pa.int32()),
        }
    )
    got = features_matrix(table, ("a", "b", "n"))
    assert got.x.dtype == np.float64 and got.x.shape == (7, 3)
    assert got.ok.tolist() == [True, False, True, False, False, False, False]
    assert got.errors.tolist() == [
        None,
        "a: missing",
        None,
        "b: 'abc' is not a finite number",
        "b: '1e39' is beyond the float32 range",
        "a: 'inf' is not a finite number",
        "b: '1e400' is not a finite number",
    ]
    assert got.x[0].tolist() == [1.5, 0.25, 1.0]
    assert got.x[2].tolist() == [2.0, 2.5, 3.0]  # spaces around a number are accepted
    assert np.isfinite(got.x).all()  # a bad value is a zero in the matrix, never NaN or inf


def test_features_matrix_reads_clean_text_with_arrows_parser_and_empty_text_as_missing() -> None:
    clean = features_matrix(pa.table({"a": ["1", "-2.5", "3e2"]}), ("a",))
    assert clean.ok.all() and clean.x[:, 0].tolist() == [1.0, -2.5, 300.0]
    blank = features_matrix(pa.table({"a": ["", "nan", "NULL", "4"]}), ("a",))
    assert blank.errors.tolist() == ["a: missing", "a: missing", "a: missing", None]


def test_batch_slice_keeps_text_and_rejects_missing_text() -> None:
    table = pa.table({"size": ["1.5", "x", "3"], "colour": ["red", "blue", None]})
    features = features_matrix(table, ("size", "colour"), ("number", "string"))
    assert features.ok.tolist() == [True, False, False]
    assert features.errors.tolist() == [None, "size: 'x' is not a finite number", "colour: missing"]
    batch = features.batch(np.array([0]))
    assert batch["colour"].tolist() == ["red"] and batch["size"].tolist() == [1.5]


def test_batch_slice_keeps_missing_numbers_the_model_imputes() -> None:
    table = pa.table({"size": ["", "NaN", "x", "4"], "weight": ["1", "2", "3", ""]})
    features = features_matrix(table, ("size", "weight"), (), ("size",))
    assert features.ok.tolist() == [True, True, False, False]
    assert features.errors.tolist() == [
        None,
        None,
        "size: 'x' is not a finite number",
        "weight: missing",
    ]
    assert np.isnan(features.x[0, 0]) and np.isnan(features.x[1, 0])


def test_batch_text_gaps_follow_the_contract() -> None:
    table = pa.table({"colour": ["red", "", None], "size": ["1", "2", "3"]})
    strict = features_matrix(table, ("colour", "size"), ("string", "number"))
    assert strict.ok.tolist() == [True, False, False]
    assert strict.errors[1] == "colour: missing"
    lenient = features_matrix(table, ("colour", "size"), ("string", "number"), ("colour",))
    assert lenient.ok.all() and lenient.batch(slice(None))["colour"].tolist() == ["red", None, None]


@pytest.mark.timeout(60)
def test_a_process_loads_each_model_once_and_stops_its_native_runners_when_done(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from mlops_ci.batch import score
    from mlops_ci.serve import model as served

    made: list[Any] = []

    class Loaded:
        def __init__(self, spec: str, threads: int, isolation: str) -> None:
            self.in_runner = spec.endswith("native")
            self.isolation = isolation
            self.closed = False
            made.append(self)

        def close(self) -> None:
            self.closed = True

    monkeypatch.setattr(served, "LoadedModel", Loaded)
    monkeypatch.setattr(served, "read_spec", str)
    score.fresh_process()
    native = score._model("/p/native", 1, "required")
    assert score._model("/p/native", 1, "required") is native and native.isolation == "required"
    onnx = score._model("/p/onnx", 1)
    assert score.LOADS == [("/p/native", 0), ("/p/onnx", 0)]
    score.close_models()
    assert native.closed and not onnx.closed  # an ONNX session holds no process
    assert score.LOADS == [("/p/onnx", 0)] and score._model("/p/onnx", 1) is onnx
    assert score._model("/p/native", 1, "required") is not native  # a later job loads anew
    score.close_models()
    score.fresh_process()


@pytest.mark.timeout(60)
def test_bool_and_category_columns_are_read_as_the_contract_says() -> None:
    """CSV text as pandas writes a bool (True/False) and a category's text; Parquet typed."""
    table = pa.table(
        {
            "flag": ["True", "false", "1", "maybe", "", "False"],
            "colour": ["red", "blue", "", "red", "green", "red"],
            "x": ["1", "2", "3", "4", "5", "6"],
        }
    )
    got = features_matrix(table, ("flag", "colour", "x"), ("bool", "category", "number"))
    assert got.ok.tolist() == [True, True, False, False, False, True]
    assert got.errors.tolist() == [
        None,
        None,
        "colour: missing",
        "flag: 'maybe' is not true or false",
        "flag: missing",
        None,
    ]
    batch = got.batch(np.array([0, 1, 5]))
    assert batch["flag"].tolist() == [1.0, 0.0, 0.0] and batch["colour"].tolist() == [
        "red",
        "blue",
        "red",
    ]
    typed = pa.table({"flag": pa.array([True, None, False]), "size": pa.array([3, 1, None])})
    lenient = features_matrix(typed, ("flag", "size"), ("bool", "category"), ("flag", "size"))
    assert lenient.ok.all() and lenient.batch(slice(None))["size"].tolist() == [3, 1, None]
    assert np.isnan(lenient.x[1, 0]) and lenient.x[[0, 2], 0].tolist() == [1.0, 0.0]
    codes = features_matrix(pa.table({"size": ["3", "1", "2"]}), ("size",), ("category",))
    assert codes.batch(slice(None))["size"].tolist() == [3, 1, 2]  # as compare's read_csv
    only_bools = features_matrix(pa.table({"flag": ["TRUE", "0"]}), ("flag",), ("bool",))
    assert only_bools.text is None and only_bools.batch(slice(None)).tolist() == [[1.0], [0.0]]


@pytest.mark.timeout(60)
def test_each_local_worker_thread_loads_its_own_model_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """A native model's runner scores one call at a time: two worker threads sharing one
    would score one after the other. Each slot loads once; slot 0 is any other thread."""
    import threading

    from mlops_ci.batch import score
    from mlops_ci.serve import model as served

    class Loaded:
        def __init__(self, spec: str, threads: int, isolation: str) -> None:
            self.in_runner = True

        def close(self) -> None:
            pass

    monkeypatch.setattr(served, "LoadedModel", Loaded)
    monkeypatch.setattr(served, "read_spec", str)
    score.fresh_process()
    got: dict[int, list[Any]] = {}

    def worker(slot: int) -> None:
        score.set_slot(slot)
        got[slot] = [score._model("/p/native", 1), score._model("/p/native", 1)]

    threads = [threading.Thread(target=worker, args=(slot,)) for slot in (1, 2)]
    for each in threads:
        each.start()
    for each in threads:
        each.join()
    main = score._model("/p/native", 1)
    assert got[1][0] is got[1][1] and got[2][0] is got[2][1]
    assert len({id(got[1][0]), id(got[2][0]), id(main)}) == 3
    assert sorted(score.LOADS) == [("/p/native", 0), ("/p/native", 1), ("/p/native", 2)]
    score.close_models()
    assert score.LOADS == []
    score.fresh_process()


@pytest.mark.timeout(60)
def test_labels_of_the_largest_probability_take_the_short_way_to_the_same_answers() -> None:
    classes = ("a", "b", "c")
    scores = np.array([[0.1, 0.7, 0.2], [0.5, 0.2, 0.3], [0.2, 0.3, 0.5], [0.4, 0.4, 0.2]])
    labels = np.array(["b", "a", "c", "a"], dtype=object)  # a tie goes to the first column
    got = _most_probable(labels, scores, classes)
    assert got is not None
    assert got[0].to_pylist() == labels.tolist()
    assert np.array_equal(got[1], convert.label_probability(labels, scores, classes))
    # A thresholded classifier's label is not its largest probability's: the long way.
    assert _most_probable(np.array(["b", "a", "a", "a"], object), scores, classes) is None
    assert _most_probable(np.array([1, 0, 2, 0]), scores, classes) is None  # not text
    assert _most_probable(labels, scores, ()) is None  # no classes to name the columns
