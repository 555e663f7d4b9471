"""The connection budget of a serve process and the protocol keeping to it: the idle ones
closed least recently used first, a young one only to stay within the bound, and a 503 when
none is idle (the real server under `ulimit -n 1024`: tests/integration/test_serve_edge.py)."""

from __future__ import annotations

import asyncio
import logging
import resource
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import orjson
import pytest
from uvicorn.config import Config
from uvicorn.server import ServerState

from mlops_ci.errors import InputError
from mlops_ci.serve.connections import (
    CEILING,
    FRESH_S,
    Budget,
    LimitedHttpToolsProtocol,
    _Episode,
    budget,
)


def test_the_open_file_limit_is_shared_out_and_a_tiny_one_is_refused() -> None:
    assert budget(1024) == Budget(descriptors=1024, connections=704, backlog=256)
    assert budget(1024).near == 633 and budget(1024).low == 563
    large = budget(65536)
    assert large.backlog == 2048 and large.connections == 65536 - 4096 - 2048
    assert budget(resource.RLIM_INFINITY).descriptors == CEILING
    with pytest.raises(InputError, match="open-file limit is 100") as caught:
        budget(100)
    assert "ulimit -n" in (caught.value.hint or "")


class _Transport:
    def __init__(self) -> None:
        self.closed = False
        self.sent = b""

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 40000), "sockname": ("127.0.0.1", 8080)}.get(name)

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def write(self, data: bytes) -> None:
        self.sent += data


@pytest.fixture
def connect(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """``connect(age, busy)``: a protocol of one server, connected ``age`` seconds ago."""
    monkeypatch.setattr(_Episode, "budget", Budget(descriptors=128, connections=10, backlog=32))
    for name, value in (("on", False), ("closed", 0), ("refused", 0)):
        monkeypatch.setattr(_Episode, name, value)
    loop = asyncio.new_event_loop()
    config = Config(app=lambda: None)
    state = ServerState()

    def connect(age: float = 10.0, busy: bool = False) -> LimitedHttpToolsProtocol:
        protocol = LimitedHttpToolsProtocol(config, state, {}, _loop=loop)
        protocol.active_at = loop.time() - age  # as if made then, before the room is made
        if busy:  # a request in flight
            protocol.cycle = SimpleNamespace(response_complete=False)  # type: ignore[assignment]
        protocol.connection_made(_Transport())  # type: ignore[arg-type]
        protocol.active_at = loop.time() - age
        return protocol

    yield connect
    loop.close()


def _closed(protocols: list[LimitedHttpToolsProtocol]) -> list[bool]:
    return [p.transport.is_closing() for p in protocols]


def test_near_the_bound_idle_connections_close_least_recently_used_first(
    connect: Any, caplog: pytest.LogCaptureFixture
) -> None:
    older = [connect(age=100 - i) for i in range(9)]  # 9 of 10: the near mark
    assert not any(_closed(older))
    newest = connect(age=0)
    # 10 open > near (9): down to low (8), the two least recently used
    assert _closed(older) == [True, True] + [False] * 7 and not _closed([newest])[0]
    assert "10 connections open, near this process's bound of 10" in caplog.text
    connect(age=0)  # 9 open and 2 closing: none closed
    assert sum(_closed(older)) == 2
    connect(age=0)  # 10 open again: two more, logged once for the episode
    assert _closed(older) == [True] * 4 + [False] * 5
    assert caplog.text.count("near this process's bound") == 1


def test_a_young_connection_is_closed_only_to_stay_within_the_bound(connect: Any) -> None:
    young = [connect(age=FRESH_S / 10) for _ in range(10)]  # its request may be on the way
    assert not any(_closed(young))  # 10: near, not past the bound: none closed
    newest = connect(age=0)
    assert _closed(young) == [True] + [False] * 9  # the oldest, to stay within 10
    assert newest.transport.sent == b""  # and the new one is served


def test_with_every_connection_busy_a_new_one_is_answered_503_in_json(connect: Any) -> None:
    busy = [connect(busy=True) for _ in range(10)]
    refused = connect(age=0)
    assert not any(_closed(busy)) and refused.transport.is_closing()
    sent: bytes = refused.transport.sent
    head, _, body = sent.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 503 ") and b"content-type: application/json" in head
    assert "holds 10 connections at most and none is idle" in orjson.loads(body)["error"]
    assert _Episode.refused == 1


def test_the_episode_ends_when_connections_fall_well_below(
    connect: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "mlops_ci.serve.connections")
    protocols = [connect() for _ in range(11)]
    assert _Episode.on
    for protocol in protocols:
        protocol.connection_lost(None)
    assert not _Episode.on and "room again: 2 idle connections were closed" in caplog.text


def test_a_connection_whose_request_head_is_arriving_is_not_idle(connect: Any) -> None:
    """A keep-alive client whose next request head came in part (large headers, a slow link):
    uvicorn has no cycle for it yet, and the answered one says complete. Closing it would lose
    the request with no answer, so it is not idle; nor is one with a request waiting behind
    another (pipelined). The one least recently used that is truly idle goes instead."""
    older = [connect(age=100 - i) for i in range(9)]
    arriving, queued = older[0], older[1]
    arriving.cycle = SimpleNamespace(response_complete=True)  # type: ignore[assignment]
    arriving.on_message_begin()
    arriving.active_at = arriving.loop.time() - 200  # the least recently used of all
    queued.pipeline.appendleft((SimpleNamespace(), None))  # type: ignore[arg-type]
    assert not arriving.idle and not queued.idle and older[2].idle
    connect(age=0)  # 10 open > near (9): two idle ones close, not these two
    assert _closed(older) == [False, False, True, True] + [False] * 5
