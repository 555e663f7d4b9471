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
    ``unit`` names what is counted.

    The bar redraws when it is called, not from a refresh thread of its own: batch-score
    forks its workers while the bar is up, and a fork should find no other thread that might
    hold a lock (of the terminal's stream, say) the child would wait on forever."""

    def __init__(self, label: str, every_s: float = 5.0, unit: str = "rows") -> None:
        self.label = label
        self.unit = unit
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
                TextColumn(self.unit),
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
            click.echo(self.line(done, total, tasks, rate), err=True)

    def line(self, done: int, total: int, tasks: int, rate: float) -> str:
        """The plain line a CI log gets."""
        return (
            f"{self.label}: {done:,}/{total:,} {self.unit} ({done / max(total, 1):.0%}), "
            f"{tasks} chunk(s) done, {rate:,.0f} {self.unit}/s"
        )

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        if self._bar is not None:
            self._bar.stop()


class CountProgress(RowProgress):
    """Call with (done, in all): features of a permutation importance, say."""

    def __call__(self, done: int, total: int, tasks: int = 0) -> None:
        super().__call__(done, total, tasks)

    def line(self, done: int, total: int, tasks: int, rate: float) -> str:
        elapsed = time.perf_counter() - self._started
        return (
            f"{self.label}: {done:,}/{total:,} {self.unit} ({done / max(total, 1):.0%}) "
            f"in {elapsed:.1f} s"
        )


class StepProgress:
    """Call with (what, done, in all) from a step that works on several things in turn (the
    importance of the candidate, then of production): one CountProgress per thing, counting
    the unit its label starts with in ``units`` (else ``steps``)."""

    def __init__(self, units: dict[str, str], every_s: float = 5.0) -> None:
        self.units = units
        self.every_s = every_s
        self._label: str | None = None
        self._current: CountProgress | None = None

    def __enter__(self) -> StepProgress:
        return self

    def __call__(self, label: str, done: int, total: int) -> None:
        if label != self._label:
            self._close()
            self._label = label
            unit = next((u for k, u in self.units.items() if label.startswith(k)), "steps")
            self._current = CountProgress(label, self.every_s, unit)
            self._current.__enter__()
        assert self._current is not None
        self._current(done, total)

    def _close(self) -> None:
        if self._current is not None:
            self._current.__exit__(None, None, None)
            self._current = None

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self._close()
