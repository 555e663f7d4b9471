"""The input log: batched segments, a torn one cut back, durable rows, a live segment read;
a full disk costs the rows of the failed writes, counted, and never a line of the segment."""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest

from mlops_ci.monitor.lines import SkippedLines
from mlops_ci.serve import inputlog
from mlops_ci.serve.inputlog import (
    InputLog,
    LogSettings,
    finish_segment,
    read_records,
    recover_orphans,
)
from mlops_ci.serve.metrics import ServiceMetrics


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


class FullDisk:
    """``_write_some`` on a disk with ``room`` bytes left (None: room enough): a write past it
    writes what fits, as the kernel does, then fails with ENOSPC."""

    def __init__(self) -> None:
        self.room: int | None = None

    def __call__(self, fd: int, data: memoryview | bytes) -> int:
        if self.room is None:
            return os.write(fd, data)
        if not self.room:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        written = os.write(fd, bytes(data[: self.room]))
        self.room -= written
        return written


def durable_log(folder: Path, **kwargs: Any) -> tuple[InputLog, ServiceMetrics]:
    metrics = ServiceMetrics("m")
    log = InputLog(
        LogSettings(folder, "m", ("a", "b"), flush_seconds=30, durable=True, **kwargs),
        metrics.count_input_log_drops(),
    )
    log.start()
    return log, metrics


def send(log: InputLog, request_id: str, rows: int) -> bool:
    """Submit ``rows`` rows; True once written, False where the write failed."""
    x = np.arange(rows * 2, dtype=np.float32).reshape(rows, 2)
    done = log.submit("1", request_id, x, np.array(["p"] * rows), np.ones((rows, 2)))
    assert done is not None
    try:
        done.result(timeout=10)
    except OSError:
        return False
    return True


def lines_of(folder: Path) -> list[bytes]:
    (segment,) = folder.glob("inputs-*")
    data = segment.read_bytes()
    assert segment.suffix == ".jsonl" and data.endswith(b"\n"), segment
    return data.splitlines()


def dropped_metric(metrics: ServiceMetrics) -> float:
    text = metrics.render().decode()
    (line,) = [x for x in text.splitlines() if x.startswith("mlops_input_log_dropped_rows_total")]
    return float(line.split()[-1])


@pytest.mark.timeout(30)
def test_a_full_disk_cuts_the_failed_write_back_and_counts_its_rows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The issue's case: writes fail mid-line on a full disk, space comes back. Every line of
    the segment parses, every row written is there, the dropped count is the rest."""
    disk = FullDisk()
    monkeypatch.setattr(inputlog, "_write_some", disk)
    log, metrics = durable_log(tmp_path)
    assert dropped_metric(metrics) == 0  # the series exists before the first failure
    assert send(log, "a", 3)
    disk.room = 150  # one row and a half of the next batch fit
    assert not send(log, "b", 4)
    assert log.status()["state"] == "failing" and "No space left" in log.status()["last_error"]
    disk.room = 0
    assert not send(log, "c", 2)
    disk.room = None  # space came back
    assert send(log, "d", 3)
    status = log.status()
    log.close()
    assert status["state"] == "ok" and status["rows_written"] == 6
    assert status["rows_dropped"] == 6 and status["last_error_at"].endswith("Z")
    assert dropped_metric(metrics) == 6
    records = [orjson.loads(line) for line in lines_of(tmp_path)]  # every line parses
    assert [r["request_id"] for r in records] == ["a"] * 3 + ["d"] * 3
    said = [r.getMessage() for r in caplog.records]
    assert sum("cannot write" in m for m in said) == 1, said  # once for the episode
    assert sum("writing again, 6 rows dropped" in m for m in said) == 1, said


@pytest.mark.timeout(30)
def test_where_even_the_cut_fails_no_line_is_glued_to_the_torn_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Truncating fails too: the whole rows that reached the file stay (and are not counted as
    dropped), the torn bytes end with a newline before the next write: one bad line, which
    readers skip and name."""
    from mlops_ci.monitor.sources import chunks

    disk = FullDisk()
    monkeypatch.setattr(inputlog, "_write_some", disk)
    cuts = {"fail": True}

    def cut(fd: int, size: int) -> None:
        if cuts["fail"]:
            raise OSError(errno.EIO, "cannot truncate")
        os.ftruncate(fd, size)

    monkeypatch.setattr(inputlog, "_cut", cut)
    log, metrics = durable_log(tmp_path)
    assert send(log, "a", 2)
    (segment,) = tmp_path.glob("*.jsonl.open")
    line = segment.stat().st_size // 2  # b's rows are as long as a's
    disk.room = line + line // 2  # one row whole, half of the next
    assert not send(log, "b", 3)
    disk.room = 0
    assert not send(log, "c", 2)  # the torn end cannot be closed either: dropped, counted
    disk.room = None
    assert send(log, "d", 1)
    log.close()
    lines = lines_of(tmp_path)
    bad = [i for i, line in enumerate(lines, 1) if not _parses(line)]
    assert bad == [4], lines  # a, a, b (whole), then the torn half of b's second row
    assert log.rows_written == 4 and log.rows_dropped == 4 and dropped_metric(metrics) == 4
    skipped = SkippedLines()
    assert [r["request_id"] for r in read_records(tmp_path, skipped)] == ["a", "a", "b", "d"]
    (segment,) = tmp_path.glob("*.jsonl")
    segment = segment.with_name(segment.name.removesuffix(".open"))
    assert skipped.count == 1 and skipped.places == [f"{segment}:4"]
    from_drift = SkippedLines()
    assert sum(len(frame) for frame in chunks(tmp_path, 2, from_drift)) == 4
    assert from_drift.summary() == f"skipped 1 line that is not a valid JSON object in {segment}:4"


@pytest.mark.timeout(30)
def test_a_segment_that_cannot_end_in_a_newline_is_left_open_then_recovered(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Shutdown while the disk is still full and the cut fails: the segment is not finished
    (it would end mid-line); the next logger's start cuts it to its last whole line."""
    disk = FullDisk()
    monkeypatch.setattr(inputlog, "_write_some", disk)

    def cut(fd: int, size: int) -> None:
        raise OSError(errno.EIO, "cannot truncate")

    monkeypatch.setattr(inputlog, "_cut", cut)
    log, _ = durable_log(tmp_path)
    assert send(log, "a", 2)
    disk.room = 40
    assert not send(log, "b", 2)
    disk.room = 0
    log.close()
    (left,) = tmp_path.glob("*.jsonl.open")
    assert not left.read_bytes().endswith(b"\n")
    monkeypatch.undo()
    (recovered,) = recover_orphans(tmp_path, "jsonl")
    assert [orjson.loads(line)["request_id"] for line in lines_of(tmp_path)] == ["a", "a"]
    assert recovered.suffix == ".jsonl"


def test_parquet_segments_skip_a_torn_line(tmp_path: Path) -> None:
    line = b'{"ts": 1, "request_id": "r", "model": "m", "version": "1", "inputs": {"a": 1}, '
    line += b'"prediction": null, "scores": []}\n'
    segment = tmp_path / "inputs-20260101T000000-999999999-0001.jsonl.open"
    segment.write_bytes(line + line[:30] + b"\n" + line)
    done = finish_segment(segment, "parquet")
    assert done.suffix == ".parquet" and not list(tmp_path.glob("*.jsonl*"))
    assert [r["request_id"] for r in read_records(tmp_path)] == ["r", "r"]


def _parses(line: bytes) -> bool:
    try:
        return isinstance(orjson.loads(line), dict)
    except orjson.JSONDecodeError:
        return False


@pytest.mark.timeout(30)
def test_rows_no_log_line_can_hold_cost_their_rows_not_the_writer(tmp_path: Path) -> None:
    """A value orjson cannot encode (here a column of Python objects) is that request's rows,
    counted dropped and its durable waiter told; the writer thread lives on and writes the
    next request (it died before: the queue grew, health said ok, durable requests hung)."""
    log, metrics = durable_log(tmp_path)
    try:
        bad = np.array([[object(), 1.0]], dtype=object)
        done = log.submit("1", "bad", bad, np.array(["p"]), np.ones((1, 2)))
        assert done is not None
        with pytest.raises(OSError, match="Type is not JSON serializable"):
            done.result(timeout=10)
        assert send(log, "good", 3)
        assert (log.rows_dropped, log.rows_written, dropped_metric(metrics)) == (1, 3, 1.0)
    finally:
        log.close()
    assert [r["request_id"] for r in read_records(tmp_path)] == ["good"] * 3


def test_a_parquet_segment_arrow_cannot_hold_stays_json_lines(tmp_path: Path) -> None:
    """One column a number in some rows and text in others (an A/B split of two versions):
    Arrow refuses the table, so the segment is finished as JSON lines, readable, instead of
    raising out of the writer (and out of the next start's recovery, a crash loop)."""
    rows = [
        {"ts": 1, "request_id": "r", "model": "m", "version": v, "inputs": {"a": 1},
         "prediction": p, "scores": []}
        for v, p in (("1", 0), ("2", "yes"))
    ]  # fmt: skip
    segment = tmp_path / "inputs-20260101T000000-999999999-0001.jsonl.open"
    segment.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows))
    done = finish_segment(segment, "parquet")
    assert done.suffix == ".jsonl" and not list(tmp_path.glob("*.parquet")), done
    assert [r["prediction"] for r in read_records(tmp_path)] == [0, "yes"]


def test_a_segment_another_namespaces_writer_holds_is_not_recovered(tmp_path: Path) -> None:
    """Two containers share the log folder: the other's segment names a pid that means nothing
    here (dead, or this very process), but its writer holds the segment's lock, so it is left
    alone; once the lock is dropped (the writer died), it is recovered."""
    import fcntl

    segment = tmp_path / f"inputs-20260101T000000-{os.getpid()}-0001.jsonl.open"
    segment.write_bytes(b'{"ts": 1}\n{"ts": 2')
    writer = os.open(segment, os.O_WRONLY | os.O_APPEND)
    fcntl.flock(writer, fcntl.LOCK_EX | fcntl.LOCK_NB)
    try:
        assert recover_orphans(tmp_path, "jsonl") == []
        assert segment.read_bytes().endswith(b'{"ts": 2'), "not cut while its writer appends"
    finally:
        os.close(writer)
    (recovered,) = recover_orphans(tmp_path, "jsonl")
    assert recovered.read_bytes() == b'{"ts": 1}\n'


@pytest.mark.timeout(30)
def test_a_shadow_row_is_marked_indexed_and_named_in_its_own_column_order(tmp_path: Path) -> None:
    settings = LogSettings(tmp_path, "m", ("a", "b"), flush_rows=100, flush_seconds=5)
    log = InputLog(settings)
    log.start()
    x = np.array([[1.0, 2.0], [3.0, 4.0]])
    log.submit("1", "req", x, np.array(["p", "q"]), np.eye(2))
    log.submit("2", "req", x[:, ::-1], np.array(["q", "q"]), np.eye(2), ("b", "a"), shadow=True)
    log.close()
    records = list(read_records(tmp_path))
    primary = [r for r in records if not r.get("shadow")]
    shadow = [r for r in records if r.get("shadow") is True]
    assert [(r["request_id"], r["row"], r["version"]) for r in primary] == [
        ("req", 0, "1"),
        ("req", 1, "1"),
    ]
    assert [(r["row"], r["version"], r["prediction"]) for r in shadow] == [
        (0, "2", "q"),
        (1, "2", "q"),
    ]
    assert [r["inputs"] for r in shadow] == [r["inputs"] for r in primary]  # by name, not place


@pytest.mark.timeout(30)
def test_a_parquet_segment_keeps_the_shadow_mark_of_rows_after_the_first(tmp_path: Path) -> None:
    pytest.importorskip("pyarrow")
    settings = LogSettings(tmp_path, "m", ("a",), format="parquet", flush_seconds=5)
    log = InputLog(settings)
    log.start()
    log.submit("1", "r", np.array([[1.0]]), np.array(["p"]), np.eye(1))
    log.submit("2", "r", np.array([[1.0]]), np.array(["q"]), np.eye(1), shadow=True)
    log.close()
    (segment,) = tmp_path.glob("*.parquet")
    records = list(read_records(tmp_path))
    assert [(r["version"], r.get("shadow")) for r in records] == [("1", None), ("2", True)]
