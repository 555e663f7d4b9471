"""The HTTP/1.1 edge of `mlops-ci serve`: uvicorn's httptools protocol with the limits a
server on a network needs, and binding the port before anything says it listens.

httptools (llhttp) takes a request head of any size and any time: a 20 MB header was read and
answered, and a client that sends its head a byte a minute holds a connection for ever. Here a
head past ``MAX_HEAD_BYTES`` or ``MAX_HEADERS`` gets 431, one not complete within
``serve.read_timeout_s`` gets 408, both as the service's JSON error body, and the connection
closes; the parser stops before the rest is read. (The body's own size limit and read timeout
are the app's: ``serve.max_payload_bytes`` and ``serve.read_timeout_s`` again.)
"""

from __future__ import annotations

import asyncio
import socket
import sys
from collections.abc import Awaitable
from typing import Any, TypeVar

import httptools
import orjson
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from mlops_ci.errors import InputError

T = TypeVar("T")
MAX_HEAD_BYTES = 32 * 1024  # request line and headers together (nginx: 4 x 8 KB buffers)
MAX_HEADERS = 100
_timeouts = {"head_s": 30.0}
_tasks: list[set[Any]] = [set()]  # uvicorn's request tasks of this process's connections


def requests_in_flight() -> int:
    """This worker's requests not yet answered (uvicorn's set of request tasks, which every
    connection of the process shares); 0 before the first connection, or under another
    server. Adaptive batching asks it: alone, a request is scored at once."""
    return len(_tasks[0])


def set_read_timeout(seconds: float) -> None:
    """``serve.read_timeout_s`` for the heads of this process's connections (set by
    ``create_app``, which every worker process runs before it serves)."""
    _timeouts["head_s"] = float(seconds)


class _Refused(Exception):
    """Raised in a parser callback to stop parsing a head that is refused."""


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, refusing heads that are too large, too many or too slow."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _tasks[0] = self.tasks
        self._in_head = True  # between requests a new head may start at any byte
        self._head_bytes = 0  # what arrived since the head began (httptools buffers a part)
        self._header_bytes = 0  # the exact size of the complete headers seen
        self._header_count = 0
        self._refused = False
        self._head_timer: asyncio.TimerHandle | None = None

    # --- connection ------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        self._unset_keepalive_if_required()
        if self._in_head:
            self._head_bytes += len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserCallbackError as err:
            if isinstance(err.__context__, _Refused):
                return
            self._bad_request()
            return
        except httptools.HttpParserError:
            self._bad_request()
            return
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
            return
        if self._in_head and self._head_bytes > MAX_HEAD_BYTES:
            self._refuse(431, f"the request head is over {MAX_HEAD_BYTES:,} bytes")

    # --- parser callbacks ------------------------------------------------------------------

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head = True
        self._header_bytes = self._header_count = 0
        self._arm()

    def on_url(self, url: bytes) -> None:
        self._grow(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_count += 1
        if self._header_count > MAX_HEADERS:
            self._refuse(431, f"the request has over {MAX_HEADERS} headers")
            raise _Refused
        self._grow(len(name) + len(value) + 4)
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._head_bytes = 0
        self._disarm()
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._in_head = True
        self._head_bytes = 0

    # --- refusing --------------------------------------------------------------------------

    def _grow(self, size: int) -> None:
        self._header_bytes += size
        if self._header_bytes > MAX_HEAD_BYTES:
            self._refuse(431, f"the request head is over {MAX_HEAD_BYTES:,} bytes")
            raise _Refused

    def _arm(self) -> None:
        self._disarm()
        self._head_timer = self.loop.call_later(_timeouts["head_s"], self._head_too_slow)

    def _disarm(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_too_slow(self) -> None:
        self._head_timer = None
        seconds = f"{_timeouts['head_s']:g} s (serve.read_timeout_s)"
        if self._in_head and self._head_bytes:  # an idle keep-alive is uvicorn's to close
            self._refuse(408, f"the request head did not arrive within {seconds}")
        elif self._in_head and self.cycle is None:  # connected, and never sent a byte
            self._refuse(408, f"no request within {seconds}")

    def _bad_request(self) -> None:
        self._refuse(400, "invalid HTTP request")

    def _refuse(self, status: int, message: str) -> None:
        """Answer ``status`` with the JSON error body and close, reading nothing more."""
        if self._refused or self.transport is None or self.transport.is_closing():
            return
        self._refused = True
        self._disarm()
        body = orjson.dumps({"error": message})
        head = [STATUS_LINE[status]]
        for name, value in self.server_state.default_headers:
            head += [name, b": ", value, b"\r\n"]
        head += [
            b"content-type: application/json\r\n",
            b"content-length: " + str(len(body)).encode("ascii") + b"\r\n",
            b"connection: close\r\n\r\n",
            body,
        ]
        self.transport.write(b"".join(head))
        self.transport.close()


async def within(seconds: float, work: Awaitable[T]) -> T:
    """``await work``, given up with ``asyncio.TimeoutError`` after ``seconds``: a timer on
    this task where Python has ``asyncio.timeout`` (3.11), else ``wait_for``'s own task."""
    if sys.version_info >= (3, 11):
        async with asyncio.timeout(seconds):
            return await work
    return await asyncio.wait_for(work, seconds)  # pragma: no cover


def bind(host: str, port: int) -> socket.socket:
    """The listening socket, bound before `serve` says it listens; a port in use (or one this
    user may not take) is bad input naming it, exit 2."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as err:
        sock.close()
        why = (err.strerror or str(err)).lower()
        raise InputError(
            f"serve.port {port}: cannot listen on {host}:{port} ({why})",
            hint="choose another port with --port, or stop what listens there",
        ) from None
    except (OverflowError, TypeError) as err:
        sock.close()
        raise InputError(f"serve.port {port}: not a port: {err}") from None
    sock.set_inheritable(True)
    return sock
