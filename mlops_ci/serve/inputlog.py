"""The input log: every scored row's inputs and outputs, for drift detection.

Requests only append their arrays to a queue; one background thread turns them into JSON lines
and writes them in batches (``flush_rows`` rows or ``flush_seconds``, whichever comes first), each
batch appended and fsynced to an open segment ``*.jsonl.open``. A segment is finished at
``rotate_mb`` or shutdown by renaming it to ``*.jsonl`` (or converting it to ``*.parquet``,
written to a temporary file and renamed). Readers only read finished files, so they never see a
torn write; a segment left by a killed process is cut back to its last whole line and finished
when the next logger starts. A killed server loses at most the rows answered in its last
``flush_seconds`` (not yet written); with ``durable`` a request is answered only once its rows
are fsynced (requests arriving together share one write), so it loses none it answered.

A full disk (or any failed write) costs the rows of that write, never the segment: the writer
remembers where the last whole line ends, cuts a failed write back to it (and where even that
fails, starts its next write on a new line, so the torn bytes are one line readers skip), and
finishes a segment only ending in a newline. The rows it could not write are counted
(``rows_dropped``, ``mlops_input_log_dropped_rows_total``, the detail of /v2/health/ready) and
the server log says when writing stops and when it resumes, once each, not per request.

The writer is woken only when a batch is due (``flush_rows`` queued, a durable request, every
``flush_seconds``), not by each request: woken per request, it took the GIL and a context switch
from the event loop every time, and serve answered 0.68x the bare app's requests at 8
connections with the log on (`benchmarks/serve_wrk.py --input-log`).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from mlops_ci.monitor.lines import SkippedLines, json_lines
from mlops_ci.procs import alive

OPEN_SUFFIX = ".jsonl.open"
# Lines serialised between hand-overs of the GIL: a batch of 512 held it for ~1.5 ms, and a
# request arriving then waited for it (Python takes the GIL back only every 5 ms).
YIELD_LINES = 16
log = logging.getLogger("mlops_ci.serve")


@dataclass(frozen=True)
class LogSettings:
    folder: Path
    model: str
    features: tuple[str, ...]
    format: str = "jsonl"  # or parquet
    flush_rows: int = 512
    flush_seconds: float = 1.0
    rotate_bytes: int = 64 * 1024 * 1024
    durable: bool = False  # submit returns a future resolved once the rows are fsynced


class InputLog:
    """Batched, crash-safe append of scored rows; ``submit`` never blocks the request."""

    def __init__(
        self, settings: LogSettings, on_dropped: Callable[[int], None] | None = None
    ) -> None:
        self.settings = settings
        self._items: deque[tuple[Any, ...]] = deque()  # appended by requests, taken by the writer
        self._queued_rows = 0  # since the writer was last woken (the requests' thread only)
        self._wake = threading.Event()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="mlops-input-log", daemon=True)
        self._segment: Path | None = None
        self._fd: int | None = None
        self._seq = 0
        self._end = 0  # where the open segment's last whole line ends: a failed write's cut
        self._torn = False  # bytes after _end that could not be cut off
        self._on_dropped = on_dropped  # the metric's counter
        self._failing_since: float | None = None  # the failure episode, for the server log
        self._episode_rows = 0
        self.rows_written = 0
        self.rows_dropped = 0
        self.last_error: str | None = None
        self.last_error_at: float | None = None

    def start(self) -> None:
        try:
            self.settings.folder.mkdir(parents=True, exist_ok=True)
            recover_orphans(self.settings.folder, self.settings.format)
        except OSError as err:  # a full disk: the service starts; each write is tried and counted
            log.error("input log: %s: %s", self.settings.folder, err)
        self._thread.start()

    def status(self) -> dict[str, Any]:
        """What /v2/health/ready says of the log: ``ok`` or ``failing`` (the last write failed),
        rows written and dropped by this worker, and the last error with its time (UTC)."""
        at = self.last_error_at
        return {
            "state": "ok" if self._failing_since is None else "failing",
            "rows_written": self.rows_written,
            "rows_dropped": self.rows_dropped,
            "last_error": self.last_error,
            "last_error_at": None if at is None else _utc(at),
        }

    def submit(
        self,
        version: str,
        request_id: str,
        x: Any,
        labels: Any,
        scores: Any,
        names: tuple[str, ...] = (),
        shadow: bool = False,
    ) -> Future[None] | None:
        """Queue the rows (``names``: the version's columns; ``shadow``: a shadow version's
        rows, marked ``"shadow": true``); with ``durable`` a future that completes once they
        are on disk (or fails with the write's error), else None — never for a shadow's rows,
        which no client waits for."""
        done: Future[None] | None = Future() if self.settings.durable and not shadow else None
        self._items.append(
            (time.time(), version, request_id, x, labels, scores, shadow, names, done)
        )
        self._queued_rows += len(next(iter(x.values()))) if isinstance(x, dict) else len(x)
        if done is not None or self._queued_rows >= self.settings.flush_rows:
            self._queued_rows = 0
            self._wake.set()
        return done

    def close(self, timeout: float = 10.0) -> None:
        """Write what is queued and finish the open segment."""
        if self._thread.is_alive():
            self._stopping = True
            self._wake.set()
            self._thread.join(timeout)

    # --- the writer thread ------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            self._wake.wait(self.settings.flush_seconds)
            self._wake.clear()  # before taking the items: a request after this wakes us again
            stopping = self._stopping
            lines: list[bytes] = []
            waiting: list[Future[None]] = []
            yielded = 0
            while self._items:
                if len(lines) - yielded >= YIELD_LINES:
                    time.sleep(0)  # hand the GIL to the event loop: a request waits for no batch
                    yielded = len(lines)
                item = self._items.popleft()
                try:
                    lines.extend(self._lines(item))
                except Exception as err:  # a value no log line can hold: its rows, not the log
                    why = self._dropped(len(item[5]), err)
                    if item[-1] is not None:
                        item[-1].set_exception(OSError(why))
                    continue
                if item[-1] is not None:
                    waiting.append(item[-1])
            self._commit(lines, waiting)
            if stopping:
                self._finish()
                return

    def _commit(self, lines: list[bytes], waiting: list[Future[None]]) -> None:
        """Write and fsync ``lines``; then tell the requests waiting on them. Whatever goes
        wrong costs these rows (counted), never the writer thread: a dead writer would let the
        queue grow, health say ok and durable requests wait for ever."""
        try:
            error = self._write(lines)
        except Exception as err:
            log.exception("input log: writing %d rows failed", len(lines))
            error = self._dropped(len(lines), err)
        for done in waiting:
            if error is None:
                done.set_result(None)
            else:
                done.set_exception(OSError(error))

    def _lines(self, item: tuple[Any, ...]) -> list[bytes]:
        ts, version, request_id, x, labels, scores, shadow, given, _done = item
        if isinstance(x, dict):  # a table: text columns kept as text
            names = tuple(x)
            values = list(zip(*(_plain_column(col) for col in x.values()), strict=True))
        else:
            # the version's own column order (a canary's or a shadow's may differ)
            names = given or self.settings.features or tuple(f"f{i}" for i in range(x.shape[1]))
            values = _plain_column(x)
        lines = []
        for i, row in enumerate(values):
            record = {
                "ts": ts,
                "request_id": request_id,
                "row": i,
                "model": self.settings.model,
                "version": version,
                "inputs": dict(zip(names, row, strict=True)),
                "prediction": None if labels is None else _plain(labels[i]),
                "scores": scores[i].tolist(),
            }
            if shadow:
                record["shadow"] = True
            lines.append(orjson.dumps(record) + b"\n")
        return lines

    def _write(self, lines: list[bytes]) -> str | None:
        """Append and fsync; None, or why the rows could not be written (they are counted)."""
        if not lines:
            return None
        try:
            if self._fd is None:
                self._open()
            self._append(b"".join(lines))
        except _Failed as failed:
            self.rows_written += failed.kept
            return self._dropped(len(lines) - failed.kept, failed.error)
        except OSError as err:  # the segment could not be opened, or a torn end not closed
            return self._dropped(len(lines), err)
        self.rows_written += len(lines)
        if self._failing_since is not None:
            log.warning(
                "input log: writing again, %d rows dropped in %.0f s before",
                self._episode_rows,
                time.time() - self._failing_since,
            )
            self._failing_since = None
        if self._end >= self.settings.rotate_bytes:
            self._finish()
        return None

    def _append(self, data: bytes) -> None:
        """Write ``data`` (whole lines) at the end of the segment and fsync it, or leave the
        segment ending at its last whole line and raise _Failed."""
        fd = self._fd
        assert fd is not None
        if self._torn:
            self._close_torn_end(fd)
        written = 0
        try:
            while written < len(data):
                wrote = _write_some(fd, memoryview(data)[written:])
                if not wrote:  # never for a file; a loop that could not end if it were
                    raise OSError(errno.ENOSPC, "a write of no bytes")
                written += wrote
            os.fsync(fd)
        except OSError as err:
            try:
                _cut(fd, self._end)
            except OSError:  # the whole lines that reached the file stay; the rest is torn
                whole = data.rfind(b"\n", 0, written) + 1
                self._end += whole
                self._torn = whole < written
                raise _Failed(err, data.count(b"\n", 0, whole)) from None
            raise _Failed(err, 0) from None
        self._end += len(data)

    def _close_torn_end(self, fd: int) -> None:
        """Cut the torn bytes a failed write left; where that still fails, end them with a
        newline: one bad line that readers skip and count, nothing glued to it."""
        try:
            _cut(fd, self._end)
        except OSError:
            _write_some(fd, b"\n")
            self._end = os.fstat(fd).st_size
        self._torn = False

    def _dropped(self, rows: int, err: BaseException) -> str:
        self.rows_dropped += rows
        if self._on_dropped is not None:
            self._on_dropped(rows)
        self.last_error = f"{type(err).__name__}: {err}"
        self.last_error_at = time.time()
        if self._failing_since is None:  # once per episode, not per batch
            self._failing_since, self._episode_rows = self.last_error_at, 0
            log.error(
                "input log: cannot write %d rows to %s: %s; serving on, counting the rows not "
                "logged (mlops_input_log_dropped_rows_total) until a write succeeds",
                rows,
                self._segment or self.settings.folder,
                self.last_error,
            )
        self._episode_rows += rows
        return self.last_error

    def _open(self) -> None:
        self._seq += 1
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
        name = f"inputs-{stamp}-{os.getpid()}-{self._seq:04d}{OPEN_SUFFIX}"
        segment = self.settings.folder / name
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC
        self._fd = os.open(segment, flags, 0o666)  # unbuffered: nothing left over to flush
        fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # a new file: never held
        self._segment, self._end, self._torn = segment, 0, False

    def _finish(self) -> None:
        """Close the open segment and finish it: only ending in a whole line (else it stays
        open, and the next logger's start cuts it back and finishes it), never empty."""
        fd, segment = self._fd, self._segment
        if fd is None or segment is None:
            return
        self._fd, self._segment = None, None
        try:
            if self._torn:
                self._close_torn_end(fd)
        except OSError as err:
            log.error("input log: %s left open, its last line torn: %s", segment, err)
            _close_quietly(fd)
            return
        _close_quietly(fd)
        try:
            if self._end == 0:
                segment.unlink()
            else:
                finish_segment(segment, self.settings.format)
        except OSError as err:  # the rows stay readable where they are
            log.error("input log: cannot finish %s: %s", segment, err)


class _Failed(Exception):
    """A write that failed after ``kept`` of its rows reached the segment whole."""

    def __init__(self, error: OSError, kept: int) -> None:
        super().__init__(str(error))
        self.error, self.kept = error, kept


def _write_some(fd: int, data: memoryview | bytes) -> int:
    """os.write: a short count is possible, the caller loops (a seam for tests' full disks)."""
    return os.write(fd, data)


def _cut(fd: int, size: int) -> None:
    """Truncate the segment back to ``size`` bytes (a seam for tests' failing truncates)."""
    os.ftruncate(fd, size)


def _close_quietly(fd: int) -> None:
    with contextlib.suppress(OSError):  # a failed close: nothing more to do with the fd
        os.close(fd)


def _utc(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def finish_segment(segment: Path, fmt: str) -> Path:
    """Rename an open segment to ``.jsonl``, or convert it to ``.parquet`` (atomically)."""
    done = segment.with_name(segment.name[: -len(OPEN_SUFFIX)] + ".jsonl")
    os.replace(segment, done)
    if fmt != "parquet":
        return done
    import pyarrow as pa
    import pyarrow.parquet as pq

    skipped = SkippedLines()
    records = list(json_lines(done, skipped))
    if skipped.count:
        log.warning("input log: %s", skipped.summary())
    target = done.with_suffix(".parquet")
    tmp = target.with_name(f".{target.name}.tmp")
    try:
        # Every key of every record is a column (from_pylist would keep the first row's keys
        # only and lose ``shadow``, which only a shadow version's rows carry).
        keys = dict.fromkeys(key for record in records for key in record)
        pq.write_table(pa.Table.from_pydict({k: [r.get(k) for r in records] for k in keys}), tmp)
        os.replace(tmp, target)
    except OSError:  # a full disk: the .jsonl stays, readable as it is
        tmp.unlink(missing_ok=True)
        raise
    except Exception as err:  # rows Arrow cannot put in one table (a column of mixed types)
        tmp.unlink(missing_ok=True)
        log.warning("input log: %s kept as JSON lines, not parquet: %s", done.name, err)
        return done
    done.unlink()
    return target


def recover_orphans(folder: Path, fmt: str) -> list[Path]:
    """Finish segments whose writer process is gone, cut back to their last whole line; one
    that cannot be (a full disk) is left for the next start."""
    recovered = []
    for segment in sorted(folder.glob(f"*{OPEN_SUFFIX}")):
        pid = _writer_pid(segment)
        if pid is not None and pid != os.getpid() and alive(pid):
            continue
        if _written_now(segment):
            continue  # its writer lives, in a PID namespace of its own (another container)
        try:
            data = segment.read_bytes()
            whole = data[: data.rfind(b"\n") + 1]
            if len(whole) != len(data):
                with open(segment, "r+b") as fh:
                    fh.truncate(len(whole))
            if whole:
                recovered.append(finish_segment(segment, fmt))
            else:
                segment.unlink()
        except OSError as err:
            log.error("input log: cannot recover %s: %s", segment, err)
    return recovered


def read_records(folder: Path, skipped: SkippedLines | None = None) -> Iterator[dict[str, Any]]:
    """Every record on disk, oldest file first: finished files, and the complete lines of a
    segment still being written; a line that is not a JSON object is counted in ``skipped``."""
    skipped = SkippedLines() if skipped is None else skipped
    for path in sorted(folder.glob("inputs-*")):
        if path.suffix == ".jsonl" or path.name.endswith(OPEN_SUFFIX):
            yield from json_lines(path, skipped, complete_only=True)
        elif path.suffix == ".parquet":
            import pyarrow.parquet as pq

            yield from pq.read_table(path).to_pylist()


def _written_now(segment: Path) -> bool:
    """Whether a writer holds the segment's lock (serve takes it on the segment it opens, and
    the kernel drops it with the process): a pid alone may name another process, or none, in
    a writer's own PID namespace."""
    try:
        fd = os.open(segment, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        os.close(fd)  # closing drops a lock taken here
    return False


def _writer_pid(segment: Path) -> int | None:
    parts = segment.name.split("-")
    return int(parts[2]) if len(parts) > 3 and parts[2].isdigit() else None


def _plain_column(x: Any) -> list[Any]:
    """float32 → shortest decimal text → float: the log shows 5.1, not 5.099999904632568."""
    if x.dtype == np.float32:
        return list(x.astype(str).astype(np.float64).tolist())
    return list(x.tolist())


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value
