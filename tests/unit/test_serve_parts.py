"""The serving parts without a server: payload parsing, the traffic split, the input log."""

from __future__ import annotations

import os
import random
import re
from pathlib import Path

import numpy as np
import orjson
import pytest

from mlops_ci.serve.inputlog import InputLog, LogSettings, read_records, recover_orphans
from mlops_ci.serve.payload import Limits, PayloadError, parse_score
from mlops_ci.serve.router import Router, SharedState, Split, StateFile, parse_split
from mlops_ci.serve.server import Weighted, parse_weighted, split_weights
from mlops_ci.serve.v2payload import parse_infer

LIMITS = Limits(n_features=2, features=("a", "b"), max_rows=3)


@pytest.mark.parametrize(
    "body",
    [
        b'{"inputs": [[1, 2.5]]}',
        b'{"inputs": [{"b": 2.5, "a": 1}]}',
        b'{"dataframe_records": [{"a": 1, "b": 2.5}]}',
        b'{"dataframe_split": {"columns": ["b", "a"], "data": [[2.5, 1]]}}',
        b'{"data": [[1, 2.5]]}',
        b'{"input_data": {"columns": ["a", "b"], "data": [[1, 2.5]]}}',
    ],
)
def test_score_spellings_give_the_same_matrix(body: bytes) -> None:
    x = parse_score(body, LIMITS)
    assert x.dtype == np.float64 and x.tolist() == [[1.0, 2.5]]


@pytest.mark.parametrize(
    ("body", "status", "says"),
    [
        (b"", 400, "empty request body"),
        (b"{", 400, "invalid JSON"),
        (b"[1]", 400, "JSON object"),
        (b'{"rows": []}', 400, "missing field 'inputs'"),
        (b'{"inputs": []}', 422, "is empty"),
        (b'{"inputs": [[1]]}', 422, "has 1 values; the model takes 2"),
        (b'{"inputs": [[1, "x"]]}', 422, "must be a number, got a string"),
        (b'{"inputs": [[1, true]]}', 422, "got a boolean"),
        (b'{"inputs": [[1, null]]}', 422, "got null"),
        (b'{"inputs": [{"a": 1}]}', 422, "missing field(s) b"),
        (b'{"inputs": [{"a": 1, "b": 2, "c": 3}]}', 422, "unknown field(s) c"),
        (b'{"inputs": [{"a": 1, "b": "2"}]}', 422, "'b' in row 0 must be a number"),
        (b'{"inputs": [[1, 1e39]]}', 422, "beyond the float32 range"),
        (b'{"inputs": [[1, 2], [1, 2], [1, 2], [1, 2]]}', 413, "limit is 3"),
        (b'{"inputs": [[1, 2], 5]}', 422, "'inputs[1]' must be a list"),
        (b'{"inputs": "1,2"}', 400, "got a string"),
        (b'{"inputs": [[1, 2]], "dataframe_split": {}}', 400, "send one of inputs, dataframe"),
        # 340282346638528860000000000000000000001 reads as float32's largest as a float64
        (b'{"inputs": [[1, 340282346638528860000000000000000000001]]}', 422, "float32 range"),
    ],
)
def test_score_refusals_name_the_problem(body: bytes, status: int, says: str) -> None:
    with pytest.raises(PayloadError) as caught:
        parse_score(body, LIMITS)
    assert caught.value.status == status and says in str(caught.value)


def test_records_need_feature_names() -> None:
    with pytest.raises(PayloadError, match="records no feature names"):
        parse_score(b'{"inputs": [{"a": 1, "b": 2}]}', Limits(2, (), 10))


def v2(tensor: dict[str, object]) -> bytes:
    import orjson

    return orjson.dumps({"id": "r1", "inputs": [tensor], "outputs": [{"name": "label"}]})


def test_v2_nested_flat_and_binary_tensors() -> None:
    nested = parse_infer(
        v2({"name": "input", "shape": [2, 2], "datatype": "FP64", "data": [[1, 2], [3, 4]]}),
        None,
        LIMITS,
    )
    flat = parse_infer(
        v2({"name": "input", "shape": [2, 2], "datatype": "INT64", "data": [1, 2, 3, 4]}),
        None,
        LIMITS,
    )
    assert nested.x.tolist() == flat.x.tolist() == [[1, 2], [3, 4]]
    assert nested.id == "r1" and nested.outputs == ("label",)
    raw = np.array([[1, 2], [3, 4]], np.float32).tobytes()
    header = v2(
        {
            "name": "input",
            "shape": [2, 2],
            "datatype": "FP32",
            "parameters": {"binary_data_size": 16},
        }
    )
    binary = parse_infer(header + raw, len(header), LIMITS)
    assert binary.x.tolist() == [[1, 2], [3, 4]]


@pytest.mark.parametrize(
    ("tensor", "says"),
    [
        ({"shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}, "model takes [rows, 2]"),
        ({"shape": [2, 2], "datatype": "FP32", "data": [1, 2, 3]}, "holds 3 values; the shape"),
        ({"shape": [1, 2], "datatype": "FP32", "data": [1, 2, 3]}, "holds 3+ values"),
        ({"shape": [1, 2], "datatype": "BYTES", "data": ["a", "b"]}, "not a numeric type"),
        ({"shape": [1, 2], "datatype": "FP32", "data": [1, "b"]}, "only numbers"),
        ({"shape": "1,2", "datatype": "FP32", "data": [1, 2]}, "must be [rows, 2]"),
        ({"shape": [0, 2], "datatype": "FP32", "data": []}, "is empty"),
        (
            {"shape": [1, 2], "datatype": "FP32", "parameters": {"binary_data_size": 4}},
            "does not match shape",
        ),
        ({"shape": [2, 2], "datatype": "FP32", "data": [[1], [2, 3, 4]]}, "row of 1 values"),
        ({"shape": [2, 2], "datatype": "FP32", "data": [[1, 2, 3, 4]]}, "nested unlike"),
        ({"shape": [2, 2], "datatype": "FP32", "data": [1, [2, 3], 4]}, "nested unlike"),
        ({"shape": [1, 2], "datatype": "INT64", "data": [1.5, 2]}, "whole numbers"),
        ({"shape": [1, 2], "datatype": "UINT8", "data": [True, 2]}, "whole numbers"),
        ({"shape": [1, 2], "datatype": {"FP32": 1}, "data": [1, 2]}, "not a numeric type"),
        ({"shape": [1, 2], "datatype": "BOOL", "data": [1, 0]}, "true/false"),
    ],
)
def test_v2_refusals(tensor: dict[str, object], says: str) -> None:
    with pytest.raises(PayloadError, match=None) as caught:
        parse_infer(v2({"name": "input", **tensor}), None, LIMITS)
    assert says in str(caught.value) and 400 <= caught.value.status < 500


def binary_request(datatype: str, raw: bytes) -> tuple[bytes, int]:
    header = v2(
        {
            "name": "input",
            "shape": [1, 2],
            "datatype": datatype,
            "parameters": {"binary_data_size": len(raw)},
        }
    )
    return header + raw, len(header)


@pytest.mark.parametrize(
    ("datatype", "raw", "says"),
    [
        ("FP32", np.array([[np.nan, 1]], np.float32).tobytes(), "NaN or infinity"),
        ("FP64", np.array([[np.inf, 1]], np.float64).tobytes(), "NaN or infinity"),
        ("BOOL", bytes([1, 7]), "bytes 0 or 1"),
    ],
)
def test_binary_tensors_are_checked_like_json_ones(datatype: str, raw: bytes, says: str) -> None:
    body, length = binary_request(datatype, raw)
    with pytest.raises(PayloadError, match=says) as caught:
        parse_infer(body, length, LIMITS)
    assert caught.value.status == 422
    ok, length = binary_request("BOOL", bytes([1, 0]))
    assert parse_infer(ok, length, LIMITS).x.tolist() == [[1.0, 0.0]]


def test_ragged_data_matching_the_total_is_refused() -> None:
    """[[1,2,3],[4,5,6,7,8]] holds 8 values, as shape [2, 4] wants, but is not 2 rows of 4."""
    limits = Limits(n_features=4, features=("a", "b", "c", "d"), max_rows=3)
    body = v2({"name": "input", "shape": [2, 4], "datatype": "FP32",
               "data": [[1, 2, 3], [4, 5, 6, 7, 8]]})  # fmt: skip
    with pytest.raises(PayloadError, match="row of 3 values"):
        parse_infer(body, None, limits)


def test_split_routes_by_weight_and_pins() -> None:
    split = Split({"1": 90.0, "2": 10.0})
    assert split.choose(0.0) == "1" and split.choose(0.8999) == "1" and split.choose(0.9) == "2"
    assert split.choose(0.999999) == "2"
    draws = random.Random(7)
    share = sum(split.choose(draws.random()) == "2" for _ in range(20_000)) / 20_000
    assert 0.09 < share < 0.11
    assert Split({"1": 0.0, "2": 5.0}).choose(0.0) == "2"
    router = Router(["1", "2"], split)
    assert router.route("2") == "2"
    with pytest.raises(PayloadError, match="not served here"):
        router.route("3")


def test_parse_split_refuses_bad_weights() -> None:
    loaded = {"1", "2"}
    assert parse_split({"1": 1, "2": 3}, loaded).shares() == {"1": 0.25, "2": 0.75}
    for bad, says in [
        ({}, "must be an object"),
        ({"3": 1}, "not loaded"),
        ({"1": -1}, "must be a number >= 0"),
        ({"1": "10"}, "must be a number >= 0"),
        ({"1": 0}, "at least one weight"),
    ]:
        with pytest.raises(PayloadError, match=says):
            parse_split(bad, loaded)


def test_state_file_carries_changes_between_workers(tmp_path: Path) -> None:
    path = tmp_path / "service.json"
    first = StateFile(path, interval=0)
    first.write(SharedState({"1": 1.0}, {"1": "/models/1"}))
    second = StateFile(path, interval=0)
    assert second.poll() == SharedState({"1": 1.0}, {"1": "/models/1"})
    assert second.poll() is None, "unchanged: nothing to apply"
    first.write(SharedState({"1": 0.0, "2": 1.0}, {"1": "/models/1", "2": "/models/2"}))
    os.utime(path, ns=(1, 1))  # a distinct mtime even on a coarse-grained clock
    assert second.poll() == SharedState({"1": 0.0, "2": 1.0}, {"1": "/models/1", "2": "/models/2"})
    assert first.poll() is not None  # the writer sees the touched file as changed too


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


def test_input_log_batches_and_a_torn_segment_is_cut_back(tmp_path: Path) -> None:
    settings = LogSettings(tmp_path, "m", ("a", "b"), flush_rows=2, flush_seconds=5)
    log = InputLog(settings)
    log.start()
    x = np.array([[1.5, 2.0], [3.0, 4.25], [5.0, 6.0]], np.float32)
    log.submit("1", "req", x, np.array(["p", "q", "r"]), np.eye(3)[:, :2])
    log.close()
    records = list(read_records(tmp_path))
    assert [r["inputs"] for r in records] == [
        {"a": 1.5, "b": 2.0},
        {"a": 3.0, "b": 4.25},
        {"a": 5.0, "b": 6.0},
    ]
    assert [r["prediction"] for r in records] == ["p", "q", "r"]

    # A segment of a process that died mid-write: two whole lines and half a third.
    line = (tmp_path / next(p.name for p in tmp_path.glob("*.jsonl"))).read_bytes().splitlines()[0]
    orphan = tmp_path / "inputs-20260101T000000-999999999-0001.jsonl.open"
    orphan.write_bytes(line + b"\n" + line + b"\n" + line[: len(line) // 2])
    (recovered,) = recover_orphans(tmp_path, "jsonl")
    assert recovered.suffix == ".jsonl" and recovered.read_bytes().count(b"\n") == 2
    assert len(list(read_records(tmp_path))) == 5


@pytest.mark.parametrize("value", ["²", "١٢", "-1", "1e3", " 12", "9" * 13])
def test_the_binary_header_length_is_ascii_digits_only(value: str) -> None:
    """str.isdigit() accepts '²' (which int() refuses: a 500 before); any such value is a 400."""
    from mlops_ci.serve.app import _int_header

    with pytest.raises(PayloadError) as caught:
        _int_header(value)
    assert caught.value.status == 400
    assert _int_header("42") == 42 and _int_header(None) is None


def test_durable_rows_are_on_disk_when_the_future_completes(tmp_path: Path) -> None:
    """monitor.durable: the request waits for its future; once it completes, the rows are in
    the open segment, where drift reads a running server's complete lines."""
    from mlops_ci.monitor.sources import chunks

    settings = LogSettings(tmp_path, "m", ("a", "b"), flush_seconds=30, durable=True)
    log = InputLog(settings)
    log.start()
    try:
        x = np.array([[1.0, 2.0], [3.0, 4.0]], np.float32)
        done = log.submit("1", "req-1", x, np.array(["p", "q"]), np.eye(2))
        assert done is not None
        done.result(timeout=5)  # long before flush_seconds: written at once, not batched
        assert [r["request_id"] for r in read_records(tmp_path)] == ["req-1", "req-1"]
        assert list(tmp_path.glob("*.jsonl.open"))  # still the open segment
        (frame,) = list(chunks(tmp_path, 100))
        assert frame[["a", "b"]].to_numpy().tolist() == [[1.0, 2.0], [3.0, 4.0]]
    finally:
        log.close()
    plain = InputLog(LogSettings(tmp_path / "plain", "m", ("a", "b"), flush_seconds=30))
    plain.start()
    assert plain.submit("1", "r", x, None, np.zeros((2, 0))) is None
    plain.close()


def test_a_segment_being_written_is_read_up_to_its_last_whole_line(tmp_path: Path) -> None:
    line = b'{"ts": 1, "request_id": "r", "model": "m", "version": "1", "inputs": {"a": 1}, '
    line += b'"prediction": null, "scores": []}'
    live = tmp_path / "inputs-20260101T000000-1-0001.jsonl.open"  # pid 1: a live writer
    live.write_bytes(line + b"\n" + line + b"\n" + line[:20])
    assert len(list(read_records(tmp_path))) == 2
    assert recover_orphans(tmp_path, "jsonl") == []  # its writer is alive: left as it is


def test_the_edge_of_float32_written_exactly_is_a_number_like_any_other() -> None:
    edge = b'{"inputs": [[1, 340282346638528859811704183484516925440]]}'
    assert parse_score(edge, LIMITS)[0, 1] == np.finfo(np.float32).max


def test_v2_whole_numbers_may_be_written_with_a_point_as_json_does_not_tell_them_apart() -> None:
    tensor = {"name": "input", "shape": [1, 2], "datatype": "INT64", "data": [3.0, -2]}
    assert parse_infer(v2(tensor), None, LIMITS).x.tolist() == [[3.0, -2.0]]


@pytest.mark.parametrize(
    ("extra", "says"),
    [
        ({"id": None}, "'id' must be a string"),
        ({"outputs": None}, "'outputs' must be a list"),
        ({"parameters": []}, "'parameters' must be an object"),
    ],
)
def test_v2_request_fields_of_the_wrong_type_are_refused(
    extra: dict[str, object], says: str
) -> None:
    tensor = {"name": "input", "shape": [1, 2], "datatype": "FP32", "data": [1, 2]}
    body = orjson.dumps({"inputs": [tensor], **extra})
    with pytest.raises(PayloadError, match=re.escape(says)) as caught:
        parse_infer(body, None, LIMITS)
    assert caught.value.status == 400


def test_a_v2_tensor_without_a_name_is_refused() -> None:
    body = orjson.dumps({"inputs": [{"shape": [1, 2], "datatype": "FP32", "data": [1, 2]}]})
    with pytest.raises(PayloadError, match=re.escape("'inputs[0].name' must be a string")):
        parse_infer(body, None, LIMITS)


def test_the_access_log_writes_batched_lines_within_its_interval_and_everything_at_flush(
    tmp_path: Path,
) -> None:
    import asyncio
    import json

    from mlops_ci.serve.accesslog import AccessLog, RequestIds

    path = tmp_path / "access.log"
    with open(path, "wb") as out:
        log = AccessLog(interval=0.05, max_bytes=10_000, fd=out.fileno())

        async def requests() -> tuple[int, int, int]:
            for i in range(3):
                log.write({"status": 200, "n": i})
            before = path.stat().st_size  # buffered: nothing written yet
            await asyncio.sleep(0.2)
            after = path.stat().st_size
            for i in range(3, 1000):  # past max_bytes: written without waiting for the timer
                log.write({"status": 200, "n": i})
            return before, after, path.stat().st_size

        before, after, full = asyncio.run(requests())
        assert before == 0 and after > 0 and full > 10_000
        log.flush()
        log.write({"status": 200, "n": 1000})  # off a loop (a direct call): written at once
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [line["n"] for line in lines] == list(range(1001))
    ids = RequestIds()
    made = {ids.new() for _ in range(1000)}
    assert len(made) == 1000 and len({RequestIds().new()[:16] for _ in range(5)}) == 5
