"""runner/wire: what crosses the pipe to the model runner's child (issue 38) arrives as it was
sent, a value that cannot be sent is named, and nothing on either side is ever unpickled: a
message describing an object array is refused (no process here: the runner itself is tested in
tests/integration/test_model_runner.py)."""

from __future__ import annotations

import ast
import io
import json
import pickle
import struct
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from mlops_ci.runner import wire
from mlops_ci.runner.wire import WireError


def round_trip(value: Any) -> Any:
    """``value`` sent and received through an in-memory channel, as the runner's pipe carries it."""
    channel = io.BytesIO()
    wire.send(channel, {"op": "call", "args": {"handle": 1}}, {"x": value})
    channel.seek(0)
    header, values = wire.receive(channel)
    assert header == {"op": "call", "args": {"handle": 1}, "arrays": header["arrays"]}
    assert channel.read() == b"", "the message was not read to its end"
    return values["x"]


def raw_message(header: dict[str, Any], buffers: list[bytes]) -> io.BytesIO:
    """A message as a peer could write it, header and buffers chosen by the test."""
    body = json.dumps({**header, "arrays": len(buffers)}).encode()
    out = io.BytesIO()
    out.write(struct.pack("<Q", len(body)) + body)
    for data in buffers:
        out.write(struct.pack("<Q", len(data)) + data)
    out.seek(0)
    return out


# --- round trips ---------------------------------------------------------------------------


def test_a_frame_of_numbers_booleans_and_dates_keeps_its_dtypes_and_values() -> None:
    frame = pd.DataFrame(
        {
            "f": [1.5, np.nan, -np.inf],
            "f32": np.array([1, 2, 3], dtype=np.float32),
            "i": [1, -2, 3],
            "u8": np.array([0, 255, 7], dtype=np.uint8),
            "b": [True, False, True],
            "when": pd.to_datetime(["2020-01-01 00:00:00", "2021-02-03 04:05:06", None]),
            "utc": pd.to_datetime(["2020-01-01", "2021-02-03", "2022-03-04"]).tz_localize("UTC"),
            "took": pd.to_timedelta([1, 2, 3], unit="s"),
        }
    )
    out = round_trip(frame)
    pd.testing.assert_frame_equal(out, frame, check_column_type=False)
    assert list(out.columns) == list(frame.columns)


def test_categorical_columns_keep_their_categories_order_and_missing_values() -> None:
    frame = pd.DataFrame(
        {
            "colour": pd.Categorical(["red", "blue", None, "red"]),
            "size": pd.Categorical(
                ["small", "large", "small", None], categories=["small", "large"], ordered=True
            ),
            "code": pd.Categorical([3, 1, 3, 2]),
        }
    )
    out = round_trip(frame)
    pd.testing.assert_frame_equal(out, frame, check_column_type=False)
    assert out["size"].cat.ordered and list(out["size"].cat.categories) == ["small", "large"]
    assert not out["colour"].cat.ordered


def test_pandas_extension_columns_keep_their_dtype_and_their_missing_values() -> None:
    frame = pd.DataFrame(
        {
            "n": pd.array([1, None, 3], dtype="Int64"),
            "yes": pd.array([True, None, False], dtype="boolean"),
            "text": pd.array(["a", None, "c"], dtype="string"),
            "read": pd.Series(["x", "y", None], dtype="str"),  # what read_csv gives (pandas 3)
        }
    )
    out = round_trip(frame)
    pd.testing.assert_frame_equal(out, frame, check_column_type=False)
    assert out["n"].isna().tolist() == [False, True, False]
    assert out["yes"].isna().tolist() == [False, True, False]


def test_an_object_column_of_text_and_mixed_values_keeps_its_values() -> None:
    frame = pd.DataFrame({"mixed": pd.Series([1, "a", None, 2.5], dtype=object)})
    out = round_trip(frame)
    assert out["mixed"].dtype == object
    assert out["mixed"].tolist() == [1, "a", None, 2.5]


def test_an_object_column_of_text_with_none_and_nan_keeps_its_dtype_and_none() -> None:
    frame = pd.DataFrame({"s": pd.Series(["x", None, np.nan], dtype=object)})
    out = round_trip(frame)
    assert out["s"].dtype == object
    assert out["s"].iloc[0] == "x" and out["s"].iloc[1] is None and np.isnan(out["s"].iloc[2])


def test_an_empty_frame_and_a_frame_of_non_text_column_names_arrive_as_sent() -> None:
    assert round_trip(pd.DataFrame()).shape == (0, 0)
    frame = pd.DataFrame({1: [1.0], "1": [2.0]})
    assert list(round_trip(frame).columns) == [1, "1"]
    rows = pd.DataFrame({"a": pd.Series([], dtype=float), "b": pd.Series([], dtype="Int64")})
    out = round_trip(rows)
    assert out.shape == (0, 2) and out.dtypes.astype(str).tolist() == ["float64", "Int64"]


def test_a_series_keeps_its_name_and_dtype() -> None:
    series = pd.Series(pd.array([1, None], dtype="Int64"), name="target")
    pd.testing.assert_series_equal(round_trip(series), series)


def test_a_dict_of_columns_arrives_as_a_dict_of_the_same_arrays() -> None:
    columns = {
        "a": np.array([1.0, 2.0]),
        "b": np.array(["x", "yz"]),
        "c": np.array([True, False]),
        "d": np.array([[1, 2], [3, 4]], dtype=np.int32),
    }
    out = round_trip(columns)
    assert list(out) == list(columns)
    for name, array in columns.items():
        assert out[name].dtype == array.dtype and out[name].shape == array.shape
        np.testing.assert_array_equal(out[name], array)
        assert out[name].flags.writeable  # a copy the model may change, not the message buffer


def test_object_arrays_travel_as_json_scalars_with_none_nan_and_infinity() -> None:
    array = np.array([["x", None], [np.nan, -np.inf], [3, True]], dtype=object)
    out = round_trip(array)
    assert out.dtype == object and out.shape == (3, 2)
    assert out[0, 0] == "x" and out[0, 1] is None
    assert np.isnan(out[1, 0]) and out[1, 1] == -np.inf
    assert out[2, 0] == 3 and out[2, 1] is True
    assert round_trip(np.array([pd.NA, pd.NaT], dtype=object)).tolist() == [pd.NA, pd.NaT]
    stamp = pd.Timestamp("2024-05-06 07:08:09")
    assert round_trip(np.array([stamp], dtype=object))[0] == stamp


def test_numpy_arrays_keep_dtype_byte_order_and_shape() -> None:
    for array in (
        np.arange(12, dtype=">i4").reshape(3, 4),
        np.array([1 + 2j], dtype=np.complex64),
        np.array(["2020-01-01"], dtype="datetime64[D]"),
        np.array([b"ab", b"c"]),
        np.asfortranarray(np.arange(6.0).reshape(2, 3)),
        np.zeros((0, 3)),
    ):
        out = round_trip(array)
        assert out.dtype == array.dtype and out.shape == array.shape
        np.testing.assert_array_equal(out, array)


def test_bytes_scalars_and_nested_lists_arrive_as_sent() -> None:
    onnx = bytes(range(256)) * 3
    assert round_trip(onnx) == onnx
    assert round_trip(bytearray(b"\x00\x01")) == b"\x00\x01"
    assert round_trip(None) is None
    for scalar in (0, -7, 2.5, "é", True, False):
        out = round_trip(scalar)
        assert out == scalar and type(out) is type(scalar)
    assert np.isnan(round_trip(float("nan"))) and round_trip(float("-inf")) == float("-inf")
    assert round_trip(np.float32(1.5)) == 1.5 and round_trip(np.int64(3)) == 3
    nested = [[1, [2.5, None]], ("a", b"raw"), {"k": [np.array([1, 2])]}, []]
    out = round_trip(nested)
    assert out[0] == [1, [2.5, None]]
    assert out[1] == ["a", b"raw"]  # a tuple arrives as a list
    np.testing.assert_array_equal(out[2]["k"][0], np.array([1, 2]))
    assert out[3] == []


def test_many_values_share_one_message_in_order() -> None:
    channel = io.BytesIO()
    wire.send(channel, {"ok": True}, {"labels": np.array([1, 2]), "scores": np.eye(2)})
    wire.send(channel, {"ok": False, "error": "second"}, {})
    channel.seek(0)
    first, values = wire.receive(channel)
    assert first["ok"] is True and values["labels"].tolist() == [1, 2]
    np.testing.assert_array_equal(values["scores"], np.eye(2))
    second, nothing = wire.receive(channel)
    assert second["error"] == "second" and nothing == {}
    with pytest.raises(EOFError):
        wire.receive(channel)


# --- what cannot be sent is named -----------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "named"),
    [
        (pd.DataFrame({"tags": pd.Series([1, {"a"}], dtype=object)}), "column 'tags'"),
        ({"rate": Decimal("1.5")}, "features['rate']"),
        ([1, object()], "features[1]"),
        (np.array([1, 2j], dtype=object), "features: a value of type complex"),
        (pd.DataFrame({("a", "b"): [1]}), "features column name"),
    ],
)
def test_a_value_that_cannot_be_sent_raises_a_wire_error_naming_it(value: Any, named: str) -> None:
    with pytest.raises(WireError, match="cannot be sent") as err:
        wire.send(io.BytesIO(), {}, {"features": value})
    assert named in str(err.value)


def test_a_frame_with_a_column_twice_and_a_structured_array_are_refused() -> None:
    twice = pd.DataFrame([[1, 2, 3]], columns=["a", "a", "b"])
    with pytest.raises(WireError, match="column.*a twice"):
        wire.send(io.BytesIO(), {}, {"features": twice})
    with pytest.raises(WireError, match=r"dtype \[\('a', '<i4'\)\] cannot be sent"):
        wire.send(io.BytesIO(), {}, {"features": np.zeros(2, dtype=[("a", "<i4")])})


def test_nothing_is_written_when_a_value_cannot_be_sent() -> None:
    channel = io.BytesIO()
    with pytest.raises(WireError):
        wire.send(channel, {"op": "call"}, {"x": np.array([1.0]), "y": [object()]})
    assert channel.getvalue() == b""  # no half message left on the pipe


# --- never pickle ---------------------------------------------------------------------------


OBJECT_DTYPES = ["|O", "O", "object", {"names": ["a"], "formats": ["|O"]}]


@pytest.mark.parametrize("dtype", [*OBJECT_DTYPES, "V8", {"names": ["a"], "formats": ["<i4"]}])
def test_a_header_claiming_an_object_or_structured_dtype_is_refused(dtype: Any) -> None:
    data = pickle.dumps(["an", "object"])  # what np.load(allow_pickle=True) would unpickle
    message = raw_message(
        {"values": {"x": {"t": "array", "a": 0, "dtype": dtype, "shape": [1]}}}, [data]
    )
    with pytest.raises(WireError, match="dtype"):
        wire.receive(message)


MALFORMED = {
    "a buffer it does not have": ({"t": "array", "a": 5, "dtype": "<f8", "shape": [1]}, 1),
    "a shape its buffer does not fill": ({"t": "array", "a": 0, "dtype": "<f8", "shape": [3]}, 1),
    "an array without a shape": ({"t": "array", "a": 0, "dtype": "<f8"}, 1),
    "a dtype as a list of fields": (
        {"t": "array", "a": 0, "dtype": [["a", "|O"]], "shape": [1]},
        1,
    ),
    "a dtype numpy does not know": ({"t": "array", "a": 0, "dtype": "nonsense", "shape": [1]}, 1),
    "a value that is not an object": ("text", 0),
}


@pytest.mark.parametrize("what", list(MALFORMED))
def test_a_malformed_message_from_the_peer_is_a_wire_error(what: str) -> None:
    meta, buffers = MALFORMED[what]
    with pytest.raises(WireError):
        wire.receive(raw_message({"values": {"x": meta}}, [b"\0" * 8] * buffers))


def test_a_category_or_extension_column_cannot_smuggle_an_object_array() -> None:
    codes = {"t": "array", "a": 0, "dtype": "|O", "shape": [1]}
    category = {"t": "category", "codes": codes, "categories": {"t": "none"}, "ordered": False}
    for column in (category, {"t": "extension", "dtype": "Int64", "v": codes}):
        frame = {"t": "frame", "columns": [["a", column]]}
        with pytest.raises(WireError, match="dtype"):
            wire.receive(raw_message({"values": {"x": frame}}, [b"\0" * 8]))


def test_unknown_kinds_scalars_and_oversized_headers_are_refused() -> None:
    with pytest.raises(WireError, match="unknown value kind 'pickle'"):
        wire.receive(raw_message({"values": {"x": {"t": "pickle", "v": "gASV"}}}, []))
    with pytest.raises(WireError, match="unknown scalar"):
        wire.receive(raw_message({"values": {"x": {"t": "scalar", "v": {"py/object": "os"}}}}, []))
    huge = io.BytesIO(struct.pack("<Q", wire.MAX_HEADER + 1))
    with pytest.raises(WireError, match="header of"):
        wire.receive(huge)
    counted = json.dumps(["no", "count"]).encode()
    with pytest.raises(WireError, match="array count"):
        wire.receive(io.BytesIO(struct.pack("<Q", len(counted)) + counted))


def test_a_truncated_message_is_the_end_of_the_channel() -> None:
    channel = io.BytesIO()
    wire.send(channel, {"ok": True}, {"y": np.arange(10.0)})
    whole = channel.getvalue()
    for cut in (0, 4, 8, len(whole) - 1):
        with pytest.raises(EOFError):
            wire.receive(io.BytesIO(whole[:cut]))


def test_a_round_trip_of_every_kind_unpickles_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    def refused(*args: object, **kwargs: object) -> None:
        raise AssertionError("the wire unpickled something")

    monkeypatch.setattr(pickle, "loads", refused)
    monkeypatch.setattr(pickle, "load", refused)
    monkeypatch.setattr(pickle, "Unpickler", refused)
    monkeypatch.setattr(np, "load", refused)
    frame = pd.DataFrame(
        {
            "f": [1.0, 2.0],
            "c": pd.Categorical(["a", "b"]),
            "n": pd.array([1, None], dtype="Int64"),
            "o": pd.Series(["x", None], dtype=object),
        }
    )
    out = round_trip({"frame": frame, "raw": b"\x80\x04", "objects": np.array([None, "x"])})
    assert out["raw"] == b"\x80\x04" and out["frame"].shape == (2, 4)


def test_the_wire_module_imports_no_serialiser_that_runs_code() -> None:
    source = Path(wire.__file__).read_text()
    tree = ast.parse(source)
    imported = {
        alias.name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, (ast.Import, ast.ImportFrom))
        for alias in (
            node.names if isinstance(node, ast.Import) else [ast.alias(node.module or "")]
        )
    }
    assert not imported & {"pickle", "cloudpickle", "joblib", "dill", "marshal", "shelve"}
    assert "allow_pickle" not in source and "np.load(" not in source
