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

The writer is woken only when a batch is due (``flush_rows`` queued, a durable request, every
``flush_seconds``), not by each request: woken per request, it took the GIL and a context switch
from the event loop every time, and serve answered 0.68x the bare app's requests at 8
connections with the log on (`benchmarks/serve_wrk.py --input-log`).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from mlops_ci.procs import alive

OPEN_SUFFIX = ".jsonl.open"
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

    def __init__(self, settings: LogSettings) -> None:
        self.settings = settings
        self._items: deque[tuple[Any, ...]] = deque()  # appended by requests, taken by the writer
        self._queued_rows = 0  # since the writer was last woken (the requests' thread only)
        self._wake = threading.Event()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="mlops-input-log", daemon=True)
        self._segment: Path | None = None
        self._handle: Any = None
        self._seq = 0
        self.rows_written = 0
        self.failed: str | None = None

    def start(self) -> None:
        self.settings.folder.mkdir(parents=True, exist_ok=True)
        recover_orphans(self.settings.folder, self.settings.format)
        self._thread.start()

    def submit(
        self, version: str, request_id: str, x: Any, labels: Any, scores: Any
    ) -> Future[None] | None:
        """Queue the rows; with ``durable`` a future that completes once they are on disk (or
        fails with the write's error), else None."""
        done: Future[None] | None = Future() if self.settings.durable else None
        self._items.append((time.time(), version, request_id, x, labels, scores, done))
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
            while self._items:
                item = self._items.popleft()
                lines.extend(self._lines(item))
                if item[-1] is not None:
                    waiting.append(item[-1])
            self._commit(lines, waiting)
            if stopping:
                self._finish()
                return

    def _commit(self, lines: list[bytes], waiting: list[Future[None]]) -> None:
        """Write and fsync ``lines``; then tell the requests waiting on them."""
        error = self._write(lines)
        for done in waiting:
            if error is None:
                done.set_result(None)
            else:
                done.set_exception(OSError(error))

    def _lines(self, item: tuple[Any, ...]) -> list[bytes]:
        ts, version, request_id, x, labels, scores, _done = item
        if isinstance(x, dict):  # a table: text columns kept as text
            names = tuple(x)
            values = list(zip(*(_plain_column(col) for col in x.values()), strict=True))
        else:
            names = self.settings.features or tuple(f"f{i}" for i in range(x.shape[1]))
            values = _plain_column(x)
        lines = []
        for i, row in enumerate(values):
            record = {
                "ts": ts,
                "request_id": request_id,
                "model": self.settings.model,
                "version": version,
                "inputs": dict(zip(names, row, strict=True)),
                "prediction": None if labels is None else _plain(labels[i]),
                "scores": scores[i].tolist(),
            }
            lines.append(orjson.dumps(record) + b"\n")
        return lines

    def _write(self, lines: list[bytes]) -> str | None:
        """Append and fsync; None, or why the rows could not be written."""
        if not lines:
            return None
        try:
            if self._handle is None:
                self._open()
            self._handle.write(b"".join(lines))
            self._handle.flush()
            os.fsync(self._handle.fileno())
            self.rows_written += len(lines)
            if self._handle.tell() >= self.settings.rotate_bytes:
                self._finish()
        except OSError as err:  # a full disk must not take the service down
            self.failed = f"{type(err).__name__}: {err}"
            log.error("input log: cannot write %d rows: %s", len(lines), self.failed)
            return self.failed
        return None

    def _open(self) -> None:
        self._seq += 1
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
        name = f"inputs-{stamp}-{os.getpid()}-{self._seq:04d}{OPEN_SUFFIX}"
        self._segment = self.settings.folder / name
        self._handle = open(self._segment, "ab")  # noqa: SIM115 - kept open across batches

    def _finish(self) -> None:
        if self._handle is None or self._segment is None:
            return
        self._handle.close()
        finish_segment(self._segment, self.settings.format)
        self._handle, self._segment = None, None


def finish_segment(segment: Path, fmt: str) -> Path:
    """Rename an open segment to ``.jsonl``, or convert it to ``.parquet`` (atomically)."""
    done = segment.with_name(segment.name[: -len(OPEN_SUFFIX)] + ".jsonl")
    os.replace(segment, done)
    if fmt != "parquet":
        return done
    import pyarrow as pa
    import pyarrow.parquet as pq

    records = [orjson.loads(line) for line in done.read_bytes().splitlines() if line]
    target = done.with_suffix(".parquet")
    tmp = target.with_name(f".{target.name}.tmp")
    pq.write_table(pa.Table.from_pylist(records), tmp)
    os.replace(tmp, target)
    done.unlink()
    return target


def recover_orphans(folder: Path, fmt: str) -> list[Path]:
    """Finish segments whose writer process is gone, cut back to their last whole line."""
    recovered = []
    for segment in sorted(folder.glob(f"*{OPEN_SUFFIX}")):
        pid = _writer_pid(segment)
        if pid is not None and pid != os.getpid() and alive(pid):
            continue
        data = segment.read_bytes()
        whole = data[: data.rfind(b"\n") + 1]
        if len(whole) != len(data):
            with open(segment, "r+b") as fh:
                fh.truncate(len(whole))
        if whole:
            recovered.append(finish_segment(segment, fmt))
        else:
            segment.unlink()
    return recovered


def read_records(folder: Path) -> Iterator[dict[str, Any]]:
    """Every record on disk, oldest file first: finished files, and the complete lines of a
    segment still being written."""
    for path in sorted(folder.glob("inputs-*")):
        if path.suffix == ".jsonl" or path.name.endswith(OPEN_SUFFIX):
            with open(path, "rb") as fh:
                for line in fh:
                    if not line.endswith(b"\n"):
                        break  # a line being appended right now
                    yield orjson.loads(line)
        elif path.suffix == ".parquet":
            import pyarrow.parquet as pq

            yield from pq.read_table(path).to_pylist()


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
