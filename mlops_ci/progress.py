"""Progress of long work: a rich progress bar on a terminal, plain lines in CI logs."""

from __future__ import annotations

import os
import sys
import time
from types import TracebackType
from typing import Any

import click


class RowProgress:
    """Call with (rows done, rows in all, tasks done); use as a context manager.

    The bar redraws when it is called, not from a refresh thread of its own: batch-score
    forks its workers while the bar is up, and a fork should find no other thread that might
    hold a lock (of the terminal's stream, say) the child would wait on forever."""

    def __init__(self, label: str, every_s: float = 5.0) -> None:
        self.label = label
        self.every_s = every_s
        self._bar: Any = None
        self._task: Any = None
        self._last = 0.0
        self._started = time.perf_counter()
        self.interactive = sys.stderr.isatty() and not os.environ.get("CI")

    def __enter__(self) -> RowProgress:
        if self.interactive:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeRemainingColumn,
            )

            self._bar = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("rows"),
                TimeRemainingColumn(),
                transient=True,
                auto_refresh=False,
            )
            self._bar.start()
            self._task = self._bar.add_task(self.label, total=None)
        return self

    def __call__(self, done: int, total: int, tasks: int) -> None:
        if self._bar is not None:
            self._bar.update(self._task, completed=done, total=total, refresh=True)
            return
        now = time.perf_counter()
        if now - self._last >= self.every_s or done >= total:
            self._last = now
            rate = done / max(now - self._started, 1e-9)
            click.echo(
                f"{self.label}: {done:,}/{total:,} rows ({done / max(total, 1):.0%}), "
                f"{tasks} chunk(s) done, {rate:,.0f} rows/s",
                err=True,
            )

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        if self._bar is not None:
            self._bar.stop()
