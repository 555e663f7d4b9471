"""The shadow version: a candidate scores a share of live requests beside the version that
answers them, and only the input log hears it.

A request chosen for the shadow is answered by its primary version as if there were none; once
the answer is sent (a Starlette background task that only queues) the request's rows wait here
for one thread that scores them with the shadow version and hands its outputs to the input log
under the same ``request_id`` and row index, marked ``"shadow": true`` (``quality`` pairs the
two). The thread runs at a lower CPU priority than the event loop, so on a busy machine the
primary gets the core. The queue holds at most ``MAX_QUEUED_ROWS`` rows: beyond that a
request's shadow work is dropped and its rows counted (``mlops_shadow_dropped_total``), never
queued without bound. A request the shadow refuses (its input contract differs from the
primary's) or fails on is counted in ``mlops_shadow_errors_total``; the client never sees it.

The rows are parsed once, for the primary; the shadow reuses them when its input contract is
the primary's, else parses the body again with its own limits, in its thread.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from mlops_ci.serve.payload import Limits, PayloadError, batch_rows

MAX_QUEUED_ROWS = 4096  # about a second of single-row requests at full rate
SHADOW_NICE = 10  # the thread's niceness above the process's: the primary comes first
log = logging.getLogger("mlops_ci.serve")


@dataclass(frozen=True)
class Shadow:
    """Which loaded version shadows the others, for what share of their requests (0–100 %)."""

    version: str
    percent: float = 100.0


def parse_shadow(value: Any, loaded: set[str]) -> Shadow:
    """A shadow from JSON ``{"version": "3", "percent": 100}``; the version must be loaded."""
    if not isinstance(value, dict) or not isinstance(value.get("version"), str):
        raise PayloadError(422, 'send {"version": "N", "percent": 0-100}')
    version = value["version"]
    if version not in loaded:
        known = ", ".join(sorted(loaded))
        raise PayloadError(422, f"version '{version[:64]}' is not loaded (loaded: {known})")
    percent = value.get("percent", 100.0)
    if type(percent) not in (int, float) or not 0 < percent <= 100:
        raise PayloadError(422, "'percent' must be a number above 0 and at most 100")
    return Shadow(version, float(percent))


class ShadowHost(Protocol):
    """What the shadow needs of the service: its versions' models and limits, the input log,
    and counters."""

    def shadow_predict(self, version: str, x: Any) -> Any: ...

    def shadow_limits(self, version: str) -> Limits | None: ...

    def shadow_logged(
        self, version: str, request_id: str, x: Any, labels: Any, scores: Any
    ) -> None: ...

    def shadow_counted(self, version: str, outcome: str, rows: int) -> None: ...


@dataclass(frozen=True)
class _Job:
    version: str
    request_id: str
    x: Any
    rows: int
    reparse: Callable[[Limits], Any] | None  # the body parsed with the shadow's limits


class ShadowScorer:
    """The queue of requests the shadow still has to score, and the thread that scores them."""

    def __init__(self, host: ShadowHost, shadow: Shadow | None = None) -> None:
        self.host = host
        self.shadow = shadow
        self._jobs: deque[_Job] = deque()
        self._queued_rows = 0
        self._lock = threading.Lock()  # the row count: requests add, the thread takes
        self._wake = threading.Event()
        self._stopping = False
        self._random = random.Random()
        self._thread: threading.Thread | None = None

    def set(self, shadow: Shadow | None) -> None:
        """Change or remove the shadow; what is queued for a removed one is not scored."""
        self.shadow = shadow

    def chosen(self, primary: str) -> Shadow | None:
        """The shadow for a request answered by ``primary``, when it takes this one."""
        shadow = self.shadow
        if shadow is None or shadow.version == primary:
            return None
        if shadow.percent < 100 and self._random.random() * 100 >= shadow.percent:
            return None
        return shadow

    def offer(
        self,
        shadow: Shadow,
        primary_limits: Limits,
        request_id: str,
        x: Any,
        reparse: Callable[[Limits], Any],
    ) -> None:
        """Queue a request's rows for ``shadow`` (called once its answer is sent); dropped and
        counted when the queue is full."""
        rows = batch_rows(x)
        with self._lock:
            if self._queued_rows + rows > MAX_QUEUED_ROWS:
                full = True
            else:
                full = False
                self._queued_rows += rows
        if full:
            self.host.shadow_counted(shadow.version, "dropped", rows)
            return
        limits = self.host.shadow_limits(shadow.version)
        same = limits is not None and _same_contract(limits, primary_limits)
        self._jobs.append(_Job(shadow.version, request_id, x, rows, None if same else reparse))
        if self._thread is None:
            self._start()
        if not self._wake.is_set():
            self._wake.set()

    def queued_rows(self) -> int:
        return self._queued_rows

    def _start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="mlops-shadow", daemon=True)
        self._thread.start()

    def close(self, timeout: float = 5.0) -> None:
        """Stop the thread; rows still queued are not scored (they were never answered by the
        shadow, and the log says how many)."""
        self._stopping = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
        left = sum(job.rows for job in self._jobs)
        if left:
            log.info("shadow: %d queued rows not scored at shutdown", left)

    def _run(self) -> None:
        with contextlib.suppress(OSError, AttributeError):  # best effort: Linux threads
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), SHADOW_NICE)
        while not self._stopping:
            self._wake.wait()
            self._wake.clear()
            while self._jobs and not self._stopping:
                job = self._jobs.popleft()
                try:
                    self._score(job)
                finally:
                    with self._lock:
                        self._queued_rows -= job.rows

    def _score(self, job: _Job) -> None:
        shadow = self.shadow
        if shadow is None or shadow.version != job.version:
            return  # removed or changed since the request was queued
        try:
            x = job.x
            if job.reparse is not None:
                limits = self.host.shadow_limits(job.version)
                if limits is None:
                    return  # unloaded since
                x = job.reparse(limits)
            prediction = self.host.shadow_predict(job.version, x)
        except PayloadError:
            self.host.shadow_counted(job.version, "refused", job.rows)
            return
        except Exception:  # the shadow's own failure never reaches a client
            log.exception("shadow v%s failed on request %s", job.version, job.request_id)
            self.host.shadow_counted(job.version, "failed", job.rows)
            return
        self.host.shadow_logged(
            job.version, job.request_id, x, prediction.labels, prediction.scores
        )
        self.host.shadow_counted(job.version, "scored", job.rows)


def _same_contract(a: Limits, b: Limits) -> bool:
    """Whether rows parsed for ``b`` are what ``a`` would have parsed (same columns, kinds and
    width; the row limit does not change a parsed row)."""
    return a.n_features == b.n_features and a.features == b.features and a.schema == b.schema
