"""NumPy to Arrow and back without pandas: the same arrays pyarrow's own conversions make."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from mlops_ci.batch.arrays import floats, from_numpy, taken

pytestmark = pytest.mark.timeout(60)


def test_floats_reads_each_chunk_at_its_offset_with_nulls_as_nan() -> None:
    whole = pa.array([1.5, None, 3.0, 4.0, None, 6.0], pa.float64())
    column = pa.chunked_array([whole.slice(1, 3), pa.array([], pa.float64()), whole.slice(4)])
    got = floats(column)
    expected = np.array([np.nan, 3.0, 4.0, np.nan, 6.0])
    assert np.array_equal(got, expected, equal_nan=True)
    assert np.array_equal(floats(whole.slice(2)), [3.0, 4.0, np.nan, 6.0], equal_nan=True)
    assert floats(pa.chunked_array([], pa.float64())).shape == (0,)


@pytest.mark.parametrize(
    "values",
    [
        np.array([True, False, True] * 5),
        np.array([3, -1, 7], np.int64),
        np.array([3, 1], np.int32),
        np.array([0.25, np.nan, -1e300]),
        np.arange(12.0).reshape(3, 4)[:, 1],  # a column of a matrix: not contiguous
    ],
)
def test_from_numpy_makes_what_pa_array_makes(values: np.ndarray) -> None:
    got, expected = from_numpy(values), pa.array(values)
    assert got.type == expected.type and len(got) == len(expected)
    assert got.null_count == expected.null_count == 0  # NaN is a value, as pa.array keeps it
    assert str(got.to_pylist()) == str(expected.to_pylist())  # NaN equals NaN as text


@pytest.mark.parametrize(
    "labels",
    [
        np.array(["setosa", "virginica", "", "setosa"], dtype=object),
        np.array(["a", "bb", "ccc"]),
        np.array(["émile", "zoë"], dtype=object),  # not ASCII: pyarrow's way
        np.array(["x", None], dtype=object),
        np.empty(0, dtype=object),
    ],
)
def test_from_numpy_text_makes_what_pa_array_makes(labels: np.ndarray) -> None:
    got = from_numpy(labels, text=True)
    assert got.type == pa.string() and got.equals(pa.array(labels, pa.string()))


def test_taken_names_equal_the_text_column_of_the_same_labels() -> None:
    names = ("setosa", "", "vérsicolor", "a\x00b")
    index = np.array([2, 0, 1, 3, 0, 2], np.int64)
    got = taken(names, index)
    assert got.type == pa.string() and got.equals(pa.array([names[i] for i in index]))
    assert taken(names, index[:0]).equals(pa.array([], pa.string()))


def test_taken_holds_the_names_as_they_are_not_padded_to_the_longest() -> None:
    import tracemalloc

    names = ("setosa", "v" * 10_000)  # one long class name, seldom predicted
    index = np.zeros(20_000, np.int64)
    index[::1000] = 1
    tracemalloc.start()
    try:
        got = taken(names, index)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert got.equals(pa.array([names[i] for i in index], pa.string()))
    assert peak < 5_000_000  # padded to the longest: 20,000 rows x 10,000 bytes, 200 MB
