"""The JSON access log: one line per request on stderr, written in batches off the request path.

Through ``logging`` each line cost a LogRecord, a handler lock and a write and flush of its own,
about a quarter of a single-row request's time in the server. Here a request appends its line to
a buffer on the event loop's thread (no lock: one thread), and every ``interval`` seconds (or
at ``max_bytes``) they are written in a few writes of whole lines of at most ``PIPE_BUF``
bytes. A line reaches stderr within ``interval``; at shutdown the buffer is written out. A
``kill -9`` loses at most the last ``interval`` of lines.
"""

from __future__ import annotations

import asyncio
import os
import select
import sys
from itertools import count
from typing import Any

import orjson

# The largest write a pipe takes whole (4,096 on Linux; POSIX guarantees 512).
PIPE_BUF = getattr(select, "PIPE_BUF", 512)


class AccessLog:
    def __init__(self, interval: float = 0.05, max_bytes: int = 64 * 1024, fd: int | None = None):
        self.interval = interval
        self.max_bytes = max_bytes
        self.fd = sys.stderr.fileno() if fd is None else fd
        self._lines: list[bytes] = []
        self._size = 0
        self._pending: asyncio.TimerHandle | None = None

    def write(self, entry: dict[str, Any]) -> None:
        line = orjson.dumps(entry) + b"\n"
        self._lines.append(line)
        self._size += len(line)
        if self._size >= self.max_bytes:
            self.flush()
        elif self._pending is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:  # not on a loop (a test calling the app directly)
                self.flush()
                return
            self._pending = loop.call_later(self.interval, self.flush)

    def flush(self) -> None:
        if self._pending is not None:
            self._pending.cancel()
            self._pending = None
        if not self._lines:
            return
        lines, self._lines, self._size = self._lines, [], 0
        try:
            for chunk in _chunks(lines):
                data = memoryview(chunk)
                while data:  # stderr may take part of a write (a pipe that is full)
                    data = data[os.write(self.fd, data) :]
        except OSError:
            pass  # stderr gone (a closed pipe): the answers matter more than their log


def _chunks(lines: list[bytes]) -> list[bytes]:
    """Whole lines joined into writes of at most PIPE_BUF bytes: a write that size is atomic on
    a pipe, so workers sharing stderr never split one another's lines."""
    chunks: list[bytes] = []
    batch: list[bytes] = []
    size = 0
    for line in lines:
        if batch and size + len(line) > PIPE_BUF:
            chunks.append(b"".join(batch))
            batch, size = [], 0
        batch.append(line)
        size += len(line)
    if batch:
        chunks.append(b"".join(batch))
    return chunks


class RequestIds:
    """Request ids unique across processes: a random per-process prefix and a counter (a
    uuid4 per request cost more than the rest of the id handling together)."""

    def __init__(self) -> None:
        self._prefix = os.urandom(8).hex()
        self._next = count(1)

    def new(self) -> str:
        return f"{self._prefix}{next(self._next):016x}"
