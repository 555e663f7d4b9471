"""SIGTERM and SIGINT as an exception in the main thread (``errors.Terminated``), for the verbs
that end their work cleanly when told to stop: the exception unwinds through their ``finally``
blocks (train ends its command's process group, records the kill, ends its MLflow run KILLED)
and ``main`` exits 128 + the signal (143, 130), as a shell reports a process it ended."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType

from mlops_ci.errors import Terminated

SIGNALS = (signal.SIGTERM, signal.SIGINT)


@contextlib.contextmanager
def terminated_by_signals() -> Iterator[None]:
    """While inside, the first SIGTERM or SIGINT raises Terminated; a second one while the
    work ends takes the signal's usual course (a user who insists is obeyed). Outside the main
    thread (a test's worker) nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    before = {signum: signal.getsignal(signum) for signum in SIGNALS}

    def stop(signum: int, frame: FrameType | None) -> None:
        for each in SIGNALS:  # the next one is not caught again
            signal.signal(each, signal.SIG_DFL if each == signal.SIGTERM else before[each])
        raise Terminated(signum)

    for signum in SIGNALS:
        signal.signal(signum, stop)
    try:
        yield
    finally:
        for signum, handler in before.items():
            signal.signal(signum, handler)
