"""The input log: batched segments, a torn one cut back, durable rows, a live segment read."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mlops_ci.serve.inputlog import InputLog, LogSettings, read_records, recover_orphans


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
