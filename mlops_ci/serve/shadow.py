"""The shadow version: a candidate scores a share of live requests beside the version that
answers them, and only the input log hears it.

A request chosen for the shadow is answered by its primary version as if there were none; once
the answer is sent (a Starlette background task that only queues) the request's rows wait here
for one thread that hands them, several requests at a time, to the shadow's own process
(``shadowproc``): it scores them with the shadow version and writes its outputs to the input log
under the same ``request_id`` and row index, marked ``"shadow": true`` (``quality`` pairs the
two). That process runs at the lowest CPU priority and holds no GIL of the worker's, so it takes
only the CPU the requests leave: below saturation it keeps up, at saturation the queue here
fills. The queue holds at most ``MAX_QUEUED_ROWS`` rows and ``MAX_QUEUED_BYTES`` of request
bodies (a larger request is taken when nothing waits); beyond that a request's shadow work is
dropped and its rows counted (``mlops_shadow_dropped_total``), never queued without bound and
never paid for by clients. Rows the shadow refuses (its input contract differs from the
primary's: the body is parsed again, in its process, with its own limits) or fails on are
counted in ``mlops_shadow_errors_total``; the client never sees them. The thread is woken every
``WAKE_S`` or once ``WAKE_ROWS`` rows wait, not per request (a wake-up takes the GIL from the
event loop). A process that cannot start or dies is started again after ``RETRY_S``; meanwhile
the rows count as failed.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Protocol

from mlops_ci.serve.payload import Limits, PayloadError, batch_rows

MAX_QUEUED_ROWS = 4096  # about a second of single-row requests at full rate
MAX_QUEUED_BYTES = 64 * 1024 * 1024  # of the queued requests' bodies
WAKE_ROWS = 64  # queued rows that wake the thread at once
WAKE_S = 0.02  # else it looks every 20 ms
RETRY_S = 5.0  # before starting a shadow process that failed again
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


class ShadowWorker(Protocol):
    """The shadow's process, as the queue uses it (``shadowproc.ShadowProcess``)."""

    def score(self, jobs: list[tuple[Any, ...]]) -> tuple[dict[str, int], int]: ...

    def close(self) -> None: ...


class ShadowHost(Protocol):
    """What the shadow needs of the service: a version's limits, its process, counters."""

    def shadow_limits(self, version: str) -> Limits | None: ...

    def shadow_process(self, version: str) -> ShadowWorker: ...

    def shadow_counted(self, version: str, outcome: str, rows: int) -> None: ...

    def shadow_log_dropped(self, rows: int) -> None: ...


@dataclass(frozen=True)
class _Job:
    version: str
    request_id: str
    x: Any  # the rows parsed for the primary; None: parse ``body`` with the shadow's limits
    rows: int
    body: bytes | None
    kind: str  # score | infer
    header: int | None  # the v2 binary extension's JSON length
    size: int  # the body's bytes, against MAX_QUEUED_BYTES


class ShadowScorer:
    """The queue of requests the shadow still has to score, and the thread that hands them to
    the shadow's process."""

    def __init__(self, host: ShadowHost, shadow: Shadow | None = None) -> None:
        self.host = host
        self.shadow = shadow
        self._jobs: deque[_Job] = deque()
        self._queued_rows = 0
        self._queued_bytes = 0
        self._lock = threading.Lock()  # the counts: requests add, the thread takes
        self._wake = threading.Event()
        self._stopping = False  # drain what is queued, then stop
        self._abandon = False  # stop now
        self._random = random.Random()
        self._thread: threading.Thread | None = None
        self._process: ShadowWorker | None = None
        self._process_version: str | None = None
        self._retry_at = 0.0

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
        body: bytes,
        kind: str = "score",
        header: int | None = None,
    ) -> None:
        """Queue a request's rows for ``shadow`` (called once its answer is sent); dropped and
        counted when the queue is full."""
        rows, size = batch_rows(x), len(body)
        with self._lock:
            over = (
                self._queued_rows + rows > MAX_QUEUED_ROWS
                or self._queued_bytes + size > MAX_QUEUED_BYTES
            )
            full = over and bool(self._queued_rows)  # a large request alone is taken
            if not full:
                self._queued_rows += rows
                self._queued_bytes += size
        if full:
            self.host.shadow_counted(shadow.version, "dropped", rows)
            return
        limits = self.host.shadow_limits(shadow.version)
        same = limits is not None and _same_contract(limits, primary_limits)
        job = _Job(
            shadow.version,
            request_id,
            x if same else None,
            rows,
            None if same else body,
            kind,
            header,
            size,
        )
        self._jobs.append(job)
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="mlops-shadow", daemon=True)
            self._thread.start()
        if self._queued_rows >= WAKE_ROWS and not self._wake.is_set():
            self._wake.set()

    def queued_rows(self) -> int:
        return self._queued_rows

    def close(self, timeout: float = 10.0) -> None:
        """Score what is queued (for at most ``timeout`` seconds), then stop the thread and the
        shadow's process; rows left then are not scored (the log says how many)."""
        self._stopping = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._abandon = True
            self._thread.join(timeout)
        left = sum(job.rows for job in self._jobs)
        if left:
            log.info("shadow: %d queued rows not scored at shutdown", left)
        self._stop_process()

    def _run(self) -> None:
        try:
            while not (self._stopping and not self._jobs) and not self._abandon:
                self._wake.wait(WAKE_S)
                self._wake.clear()
                while self._jobs and not self._abandon:
                    jobs = self._take()
                    try:
                        self._send(jobs)
                    finally:
                        with self._lock:
                            self._queued_rows -= sum(job.rows for job in jobs)
                            self._queued_bytes -= sum(job.size for job in jobs)
        finally:
            # by this thread: the process dies with the thread that started it (its log
            # written first when told to stop; a SIGTERM from the kernel would cut it short)
            self._stop_process()

    def _take(self) -> list[_Job]:
        """What is queued for the version of the first job, in order."""
        jobs = [self._jobs.popleft()]
        while self._jobs and self._jobs[0].version == jobs[0].version:
            jobs.append(self._jobs.popleft())
        return jobs

    def _send(self, jobs: list[_Job]) -> None:
        version = jobs[0].version
        shadow = self.shadow
        if shadow is None or shadow.version != version:
            return  # removed or changed since these were queued
        rows = sum(job.rows for job in jobs)
        try:
            process = self._process_for(version)
            counts, dropped = process.score(
                [(j.request_id, j.rows, j.x, j.body, j.kind, j.header) for j in jobs]
            )
        except Exception as err:  # it could not start, or it died: the client never knows
            if time.monotonic() >= self._retry_at:
                log.error("shadow v%s: %s (rows counted as failed)", version, err)
            self._stop_process()
            self._retry_at = max(self._retry_at, time.monotonic() + RETRY_S)
            self.host.shadow_counted(version, "failed", rows)
            return
        for outcome, counted in counts.items():
            self.host.shadow_counted(version, outcome, counted)
        if dropped:
            self.host.shadow_log_dropped(dropped)

    def _process_for(self, version: str) -> ShadowWorker:
        if self._process is not None and self._process_version == version:
            return self._process
        self._stop_process()
        if time.monotonic() < self._retry_at:
            raise RuntimeError("its process failed a moment ago")
        self._process = self.host.shadow_process(version)
        self._process_version = version
        return self._process

    def _stop_process(self) -> None:
        process, self._process = self._process, None
        if process is not None:
            try:
                process.close()
            except Exception as err:
                log.warning("shadow: stopping its process: %s", err)


def _same_contract(a: Limits, b: Limits) -> bool:
    """Whether rows parsed for ``b`` are what ``a`` would have parsed (same columns, kinds and
    width; the row limit does not change a parsed row)."""
    return a.n_features == b.n_features and a.features == b.features and a.schema == b.schema
