"""The shadow's own process: it loads the shadow version, scores the rows the serving worker
hands it and writes their input-log lines itself, at the lowest CPU priority.

In the worker a thread would share the GIL with the event loop: every batch it scored and every
line its rows cost the log writer was time a request waited for the GIL (measured: the primary's
p99 at half load 1.7-3.1x with a 100 % shadow of the same model, `benchmarks/shadow.py`), and a
thread's niceness does not reach the GIL. A process at nice 19 takes only the CPU the worker
leaves: below saturation it keeps up in the gaps, at saturation its queue in the worker fills
and the worker drops and counts what does not fit. The worker's cost is a pickle and a pipe
write per batch.

The child is ``python -m mlops_ci.serve.shadowproc FD``, speaking
``multiprocessing.connection`` (pickled tuples) over a socket pair: ``init`` (the version's
``ModelSpec``, the input log's settings, threads, isolation, the row limit) → ``ready`` or
``error``; then ``score`` (the jobs) → ``done`` (rows per outcome, rows its log dropped); and
``stop``. It dies with the worker's thread that started it (``PR_SET_PDEATHSIG``). A native
shadow is scored in its model runner as in the worker (the sandbox, one loader); an ONNX graph
on onnxruntime here. Rows whose input contract differs from the primary's come as the request
body and are parsed here, with the shadow's own limits.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from multiprocessing.connection import Connection
from typing import Any

from mlops_ci.serve.batching import calibrate, signature, stacked

_NOT_PASSED = ("MLOPS_SERVE_ADMIN_TOKEN", "MLOPS_SERVE_SETTINGS")  # the worker's, not its own
START_TIMEOUT_S = 120.0  # loading a native model in its sandboxed runner included
BATCH_ROWS = 256  # rows of several requests scored in one model call

# One job: (request_id, rows, x or None, body or None, "score" | "infer", binary header length)
Job = tuple[str, int, Any, bytes | None, str, int | None]


class ShadowProcess:
    """The worker's side: the child started, asked to score jobs, and stopped."""

    def __init__(self, spec: Any, log: Any, threads: int, isolation: str, max_rows: int) -> None:
        ours, theirs = socket.socketpair()
        self._popen = subprocess.Popen(
            [sys.executable, "-m", "mlops_ci.serve.shadowproc", str(theirs.fileno())],
            pass_fds=[theirs.fileno()],
            stdin=subprocess.DEVNULL,
            env={k: v for k, v in os.environ.items() if k not in _NOT_PASSED},
        )
        theirs.close()
        self.conn = Connection(ours.detach())
        try:
            self.conn.send(("init", spec, log, threads, isolation, max_rows))
            if not self.conn.poll(START_TIMEOUT_S):
                raise RuntimeError(f"the shadow process did not start in {START_TIMEOUT_S:g} s")
            answer = self.conn.recv()
            if answer[0] != "ready":
                raise RuntimeError(str(answer[1]))
        except BaseException:
            self.close()
            raise

    def score(self, jobs: list[Job]) -> tuple[dict[str, int], int]:
        """Rows per outcome (scored, refused, failed), and rows the child's log dropped."""
        self.conn.send(("score", jobs))
        answer = self.conn.recv()
        return dict(answer[1]), int(answer[2])

    def close(self) -> None:
        with contextlib.suppress(OSError, EOFError, ValueError):
            self.conn.send(("stop",))
        with contextlib.suppress(OSError):
            self.conn.close()
        try:
            self._popen.wait(10)
        except subprocess.TimeoutExpired:
            self._popen.kill()
            self._popen.wait()


# --- the child ----------------------------------------------------------------------------


def main(fd: int) -> None:
    with contextlib.suppress(OSError):
        os.setpriority(os.PRIO_PROCESS, 0, 19)  # the worker first, always
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGTERM), 0, 0, 0)  # PDEATHSIG
    signal.signal(signal.SIGTERM, _exit)  # a clean exit: the log written, the runner stopped
    conn = Connection(fd)
    message = conn.recv()
    try:
        shadow = _Shadow(*message[1:])
    except Exception as err:  # the model or the log cannot be opened: said, not raised
        conn.send(("error", f"{type(err).__name__}: {err}"))
        return
    conn.send(("ready",))
    try:
        while True:
            try:
                message = conn.recv()
            except EOFError:
                return  # the worker is gone
            if message[0] != "score":
                return
            counts = shadow.score(message[1])
            conn.send(("done", counts, shadow.log_dropped()))
    finally:
        shadow.close()


def _exit(signum: int, frame: Any) -> None:
    sys.exit(0)


class _Shadow:
    """The shadow version and its input log, in the child."""

    def __init__(self, spec: Any, log: Any, threads: int, isolation: str, max_rows: int) -> None:
        from mlops_ci.serve.inputlog import InputLog
        from mlops_ci.serve.model import LoadedModel
        from mlops_ci.serve.payload import Limits

        self.model = LoadedModel(spec, threads, isolation)
        self.version = spec.version
        self.limits = Limits(self.model.n_features, spec.features, max_rows, self.model.schema)
        calibrate(self.model, self.limits)  # a row's answer whatever rows share its call
        self.log = InputLog(log) if log is not None else None
        if self.log is not None:
            self.log.start()
        self._dropped_told = 0

    def score(self, jobs: list[Job]) -> Counter[str]:
        """Score ``jobs`` (several requests per model call) and log each one's rows."""
        counts: Counter[str] = Counter()
        parsed = list(self._parsed(jobs, counts))
        for group in _groups(parsed):
            try:
                prediction = self.model.predict(stacked([x for _, x, _ in group]))
            except Exception:
                for one in group:  # one bad request costs its own rows only
                    self._one(one, counts)
                continue
            start = 0
            for request_id, x, rows in group:
                self._log(request_id, x, prediction, start, start + rows)
                start += rows
            counts["scored"] += start
        return counts

    def _parsed(self, jobs: list[Job], counts: Counter[str]) -> Iterator[tuple[str, Any, int]]:
        from mlops_ci.serve.payload import PayloadError, batch_rows, parse_score
        from mlops_ci.serve.v2payload import parse_infer

        for request_id, rows, x, body, kind, header in jobs:
            if x is None:
                try:
                    assert body is not None
                    x = (
                        parse_score(body, self.limits)
                        if kind == "score"
                        else parse_infer(body, header, self.limits).x
                    )
                except PayloadError:
                    counts["refused"] += rows
                    continue
            yield request_id, x, batch_rows(x)

    def _one(self, job: tuple[str, Any, int], counts: Counter[str]) -> None:
        from mlops_ci.serve.payload import PayloadError

        request_id, x, rows = job
        try:
            prediction = self.model.predict(x)
        except PayloadError:
            counts["refused"] += rows
            return
        except Exception:
            counts["failed"] += rows
            return
        self._log(request_id, x, prediction, 0, rows)
        counts["scored"] += rows

    def _log(self, request_id: str, x: Any, prediction: Any, start: int, end: int) -> None:
        if self.log is None:
            return
        labels = None if prediction.labels is None else prediction.labels[start:end]
        self.log.submit(
            self.version,
            request_id,
            x,
            labels,
            prediction.scores[start:end],
            self.limits.features,
            shadow=True,
        )

    def log_dropped(self) -> int:
        """Rows the log could not write since last asked."""
        if self.log is None:
            return 0
        now = self.log.rows_dropped
        told, self._dropped_told = self._dropped_told, now
        return now - told

    def close(self) -> None:
        if self.log is not None:
            self.log.close()
        self.model.close()


def _groups(parsed: list[tuple[str, Any, int]]) -> Iterator[list[tuple[str, Any, int]]]:
    """Consecutive requests whose rows stack into one model input, at most ``BATCH_ROWS``."""
    group: list[tuple[str, Any, int]] = []
    rows = 0
    for item in parsed:
        key = signature(item[1])
        if group and (rows + item[2] > BATCH_ROWS or key is None or key != signature(group[0][1])):
            yield group
            group, rows = [], 0
        group.append(item)
        rows += item[2]
    if group:
        yield group


if __name__ == "__main__":
    main(int(sys.argv[1]))
