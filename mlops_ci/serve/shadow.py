"""The shadow version: a candidate scores a share of live requests beside the version that
answers them, and only the input log hears it.

A request chosen for the shadow is answered by its primary version as if there were none; once
the answer is sent (a Starlette background task that only queues) the request's rows wait here
for one thread that scores them with the shadow version and hands its outputs to the input log
under the same ``request_id`` and row index, marked ``"shadow": true`` (``quality`` pairs the
two).

The shadow gives way to the primary: its thread is not woken per request (that took the GIL
from the event loop each time) but every ``WAKE_S`` or once ``WAKE_ROWS`` rows wait; it runs
at a lower CPU priority than the event loop (an ONNX shadow; a native one scores in its model
runner's process); what queued is scored together, in model calls of at most ``BATCH_ROWS``
rows, each request then logged with its own rows; and it hands the GIL back between requests.
So below saturation it keeps up in the gaps, and at saturation its queue fills: it holds at
most ``MAX_QUEUED_ROWS`` rows and ``MAX_QUEUED_BYTES`` of request bodies (a request larger
than that is taken when nothing waits), and beyond that a request's shadow work is dropped and
its rows counted (``mlops_shadow_dropped_total``), never queued without bound and never paid
for by clients.
A request the shadow refuses (its input contract differs from the primary's) or fails on is
counted in ``mlops_shadow_errors_total``; the client never sees it.

The rows are parsed once, for the primary; the shadow reuses them when its input contract is
the primary's, else parses the body again with its own limits, in its thread.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from mlops_ci.serve.payload import Limits, PayloadError, batch_rows

MAX_QUEUED_ROWS = 4096  # about a second of single-row requests at full rate
MAX_QUEUED_BYTES = 64 * 1024 * 1024  # of the queued requests' bodies
BATCH_ROWS = 256  # rows of queued requests scored in one model call
SHADOW_NICE = 10  # the thread's niceness above the process's: the primary comes first
WAKE_ROWS = 64  # queued rows that wake the thread at once
WAKE_S = 0.02  # else it looks every 20 ms
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
    size: int = 0  # the body's bytes


class ShadowScorer:
    """The queue of requests the shadow still has to score, and the thread that scores them."""

    def __init__(self, host: ShadowHost, shadow: Shadow | None = None) -> None:
        self.host = host
        self.shadow = shadow
        self._jobs: deque[_Job] = deque()
        self._queued_rows = 0
        self._queued_bytes = 0
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
        size: int = 0,
    ) -> None:
        """Queue a request's rows for ``shadow`` (called once its answer is sent; ``size``: its
        body's bytes); dropped and counted when the queue is full."""
        rows = batch_rows(x)
        with self._lock:
            empty = not self._queued_rows
            over = (
                self._queued_rows + rows > MAX_QUEUED_ROWS
                or self._queued_bytes + size > MAX_QUEUED_BYTES
            )
            full = over and not empty  # a large request alone is taken: no backlog to add to
            if not full:
                self._queued_rows += rows
                self._queued_bytes += size
        if full:
            self.host.shadow_counted(shadow.version, "dropped", rows)
            return
        limits = self.host.shadow_limits(shadow.version)
        same = limits is not None and _same_contract(limits, primary_limits)
        job = _Job(shadow.version, request_id, x, rows, None if same else reparse, size)
        self._jobs.append(job)
        if self._thread is None:
            self._start()
        if self._queued_rows >= WAKE_ROWS and not self._wake.is_set():
            self._wake.set()  # else the thread's timer: no wake-up (and GIL hand-off) per request

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
            self._wake.wait(WAKE_S)
            self._wake.clear()
            while self._jobs and not self._stopping:
                jobs = self._take()
                try:
                    self._score_together(jobs)
                finally:
                    with self._lock:
                        self._queued_rows -= sum(job.rows for job in jobs)
                        self._queued_bytes -= sum(job.size for job in jobs)
                time.sleep(0)  # the GIL to the event loop between batches

    def _take(self) -> list[_Job]:
        """The next job, and those queued behind it that can share its model call (the same
        version, rows parsed for its contract) up to ``BATCH_ROWS`` rows."""
        jobs = [self._jobs.popleft()]
        rows = jobs[0].rows
        if jobs[0].reparse is not None:
            return jobs
        while self._jobs:
            after = self._jobs[0]
            if after.version != jobs[0].version or after.reparse is not None:
                break
            if rows + after.rows > BATCH_ROWS or not _joinable(jobs[0].x, after.x):
                break
            jobs.append(self._jobs.popleft())
            rows += after.rows
        return jobs

    def _score_together(self, jobs: list[_Job]) -> None:
        """One model call for ``jobs``, each logged with its own rows; where the call fails,
        each job alone (one bad request costs only its own rows)."""
        if len(jobs) == 1:
            self._score(jobs[0])
            return
        version = jobs[0].version
        shadow = self.shadow
        if shadow is None or shadow.version != version:
            return
        try:
            prediction = self.host.shadow_predict(version, _joined([job.x for job in jobs]))
        except Exception:
            for job in jobs:
                self._score(job)
            return
        start = 0
        for job in jobs:
            end = start + job.rows
            labels = None if prediction.labels is None else prediction.labels[start:end]
            scores = prediction.scores[start:end]
            self.host.shadow_logged(version, job.request_id, job.x, labels, scores)
            start = end
            time.sleep(0)  # the GIL to the event loop between requests
        self.host.shadow_counted(version, "scored", start)

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


def _joinable(a: Any, b: Any) -> bool:
    """Whether two requests' parsed rows can be stacked into one model input."""
    if isinstance(a, np.ndarray) and isinstance(b, np.ndarray):
        return a.ndim == b.ndim == 2 and a.shape[1] == b.shape[1] and a.dtype == b.dtype
    if isinstance(a, dict) and isinstance(b, dict) and list(a) == list(b):
        return all(
            isinstance(a[k], np.ndarray)
            and isinstance(b[k], np.ndarray)
            and a[k].dtype == b[k].dtype
            for k in a
        )
    return False


def _joined(xs: list[Any]) -> Any:
    """The rows of several requests as one input, in order (``_joinable`` said they stack)."""
    if isinstance(xs[0], dict):
        return {k: np.concatenate([x[k] for x in xs]) for k in xs[0]}
    return np.concatenate(xs)


def _same_contract(a: Limits, b: Limits) -> bool:
    """Whether rows parsed for ``b`` are what ``a`` would have parsed (same columns, kinds and
    width; the row limit does not change a parsed row)."""
    return a.n_features == b.n_features and a.features == b.features and a.schema == b.schema
