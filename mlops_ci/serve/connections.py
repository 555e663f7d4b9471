"""How many connections one `serve` process keeps open, from its open-file limit, and the
HTTP protocol that keeps to it.

Every connection is a file descriptor. At RLIMIT_NOFILE accept() fails (EMFILE), and libuv
(uvloop, uvicorn's loop) then accepts and closes whatever waits in the listen queue to drain
it: under ``ulimit -n 1024``, 1,100 idle sockets made every health check fail for 30 s (until
the head timeout closed them), with nothing logged. Here the limit is shared out: descriptors
the process needs for itself (model files, logs, the pipes of workers and model runners), the
listen queue (the loop accepts all of it in one go, before any protocol sees a connection),
and the connections. Near their bound the idle ones are closed, least recently used first; a
connection beyond it is answered 503 (the JSON error body) and closed, and the server log
says so once an episode.
"""

from __future__ import annotations

import asyncio
import logging
import resource
from dataclasses import dataclass
from typing import Any

from mlops_ci.errors import InputError
from mlops_ci.serve.protocol import BoundedHttpToolsProtocol

MIN_DESCRIPTORS = 128  # below this a server has no room for both its files and connections
CEILING = 1 << 20  # an unlimited RLIMIT_NOFILE counts as this many
FRESH_S = 0.1  # a connection this young that sent nothing may have its request on the way
log = logging.getLogger("mlops_ci.serve.connections")


@dataclass(frozen=True)
class Budget:
    """The open-file limit of this process, shared out."""

    descriptors: int  # RLIMIT_NOFILE's soft limit
    connections: int  # open at most; a new one beyond is answered 503
    backlog: int  # the listen queue: accepted in one go, so it must fit too

    @property
    def near(self) -> int:
        """From here on idle connections are closed to make room."""
        return self.connections * 9 // 10

    @property
    def low(self) -> int:
        """Where closing idle connections stops (a sweep makes room for many at once)."""
        return self.connections * 8 // 10


def budget(descriptors: int | None = None) -> Budget:
    """The budget of ``descriptors`` open files (RLIMIT_NOFILE's soft limit when None): a
    sixteenth (64 at least) for the process's own files, a quarter (2,048 at most) for the
    listen queue, the rest for connections (704 of 1,024)."""
    if descriptors is None:
        descriptors = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if descriptors == resource.RLIM_INFINITY or descriptors > CEILING:
        descriptors = CEILING
    if descriptors < MIN_DESCRIPTORS:
        raise InputError(
            f"serve: the open-file limit is {descriptors}; serving needs {MIN_DESCRIPTORS} "
            "at least (connections, model files, logs)",
            hint=f"raise it before serving, e.g. ulimit -n {MIN_DESCRIPTORS * 8}",
        )
    reserved = max(64, descriptors // 16)
    backlog = min(2048, descriptors // 4)
    return Budget(descriptors, descriptors - reserved - backlog, backlog)


class _Episode:
    """This process's budget (read once, at its first connection) and one stretch of time
    spent near the bound: logged when it starts and when it ends, not per connection."""

    budget: Budget | None = None
    on = False
    closed = 0
    refused = 0

    @classmethod
    def current(cls) -> Budget:
        if cls.budget is None:
            cls.budget = budget()
        return cls.budget

    @classmethod
    def start(cls, open_now: int, limits: Budget) -> None:
        if cls.on:
            return
        cls.on, cls.closed, cls.refused = True, 0, 0
        log.warning(
            "%d connections open, near this process's bound of %d (open-file limit %d): "
            "closing idle connections, least recently used first; a new connection beyond "
            "the bound is answered 503",
            open_now,
            limits.connections,
            limits.descriptors,
        )

    @classmethod
    def end(cls, open_now: int) -> None:
        cls.on = False
        log.info(
            "%d connections open, room again: %d idle connections were closed and %d refused "
            "(503) meanwhile",
            open_now,
            cls.closed,
            cls.refused,
        )


class LimitedHttpToolsProtocol(BoundedHttpToolsProtocol):
    """The bounded protocol, keeping the process's connections within its ``Budget``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.active_at = 0.0  # when it last began or answered a request (or connected): LRU
        self.receiving = False  # a request's head has begun arriving and is not complete

    @property
    def idle(self) -> bool:
        """No request in flight, arriving or waiting behind another: closing it loses nothing
        (``shutdown`` closes it). uvicorn makes a request's cycle only once its head is whole,
        so a head arriving in pieces is told by ``receiving``."""
        if self.receiving or self.pipeline:
            return False
        return self.cycle is None or self.cycle.response_complete

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.active_at = self.loop.time()
        limits = _Episode.current()
        if len(self.connections) > limits.near:
            self._make_room(limits)

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        if _Episode.on and len(self.connections) < _Episode.current().low // 2:
            _Episode.end(len(self.connections))

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.active_at = self.loop.time()
        self.receiving = True

    def on_headers_complete(self) -> None:
        self.receiving = False  # its cycle now says whether it is answered
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self.active_at = self.loop.time()  # a client just answered is the likeliest to send

    def _make_room(self, limits: Budget) -> None:
        """Close idle connections down to ``limits.low``, least recently used first. One
        connected a moment ago may have its request on the way (unread yet): such a one is
        closed only to stay within the bound, and with none idle this one is answered 503."""
        alive = [c for c in self.connections if not c.transport.is_closing()]
        if len(alive) <= limits.near:
            return  # the rest are closing already
        _Episode.start(len(alive), limits)
        idle = sorted(
            (c for c in alive if c is not self and isinstance(c, LimitedHttpToolsProtocol)
             and c.idle),
            key=lambda c: c.active_at,
        )  # fmt: skip
        settled = self.loop.time() - FRESH_S
        closing = min(sum(c.active_at <= settled for c in idle), len(alive) - limits.low)
        over = len(alive) - closing - limits.connections
        if over > 0:
            closing = min(len(idle), closing + over)
        for connection in idle[:closing]:
            connection.shutdown()
        _Episode.closed += closing
        if len(alive) - closing > limits.connections:
            _Episode.refused += 1
            self._refuse(
                503,
                f"this server holds {limits.connections} connections at most and none is "
                "idle; retry shortly",
            )
