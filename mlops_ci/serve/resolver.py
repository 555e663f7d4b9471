"""Name lookups off the front's request path.

The front forwards to ``http://mlops-ci-MODEL-ENV-vN:8080``, names the container engine's DNS
(podman's aardvark-dns, Docker's embedded DNS) answers on the version network. aiohttp looks a
name up again every 10 s by default, in the request that finds the cache expired; when that
lookup meets the engine's DNS reloading (it does whenever a container joins or leaves a
network, e.g. the next version starting) the request waits out the resolver's retries, 5 s
and more, and a client with a 10 s timeout gives up. A version container keeps its address
while it runs, so the last answer is used and refreshed in the background; a failed connect
forgets the name (a restarted container has a new address) and the next request asks again.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver

Key = tuple[str, int]  # host, port: the connector asks one family (AF_UNSPEC)


class StickyResolver(AbstractResolver):
    """The last answer for a name at once; a background refresh after ``refresh_s``."""

    def __init__(self, refresh_s: float = 30.0, inner: AbstractResolver | None = None) -> None:
        self.refresh_s = refresh_s
        self._inner = inner  # ThreadedResolver needs the running loop: made on first use
        self._answers: dict[Key, tuple[float, list[ResolveResult]]] = {}
        self._refreshing: dict[Key, asyncio.Task[None]] = {}

    def _lookup(self) -> AbstractResolver:
        if self._inner is None:
            self._inner = ThreadedResolver()
        return self._inner

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        key = (host, port)
        known = self._answers.get(key)
        if known is None:  # the first request to a version waits for its lookup
            answer = await self._lookup().resolve(host, port, family)
            self._answers[key] = (time.monotonic(), answer)
            return answer
        at, answer = known
        if time.monotonic() - at > self.refresh_s and key not in self._refreshing:
            self._refreshing[key] = asyncio.ensure_future(self._refresh(key, family))
        return answer

    async def _refresh(self, key: Key, family: socket.AddressFamily) -> None:
        try:
            answer = await self._lookup().resolve(key[0], key[1], family)
        except OSError:
            return  # keep the last good answer; a failed connect forgets it
        else:
            if key in self._answers:  # not forgotten meanwhile
                self._answers[key] = (time.monotonic(), answer)
        finally:
            self._refreshing.pop(key, None)

    async def warm(self, hosts: list[tuple[str, int]], within_s: float = 20.0) -> None:
        """Look up the names not known yet, before any request needs them (the admin call that
        adds a version waits for this, not a client); a name that does not resolve is left to
        the first request, which reports it."""

        async def one(host: str, port: int) -> None:
            with contextlib.suppress(OSError):
                await self.resolve(host, port, socket.AF_UNSPEC)

        todo = [one(h, p) for h, p in hosts if (h, p) not in self._answers]
        if todo:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.gather(*todo), within_s)

    def forget(self, host: str) -> None:
        """Drop what is known of ``host`` (its connect failed: it may have a new address)."""
        for key in [k for k in self._answers if k[0] == host]:
            del self._answers[key]

    async def close(self) -> None:
        for task in list(self._refreshing.values()):
            task.cancel()
        if self._inner is not None:
            await self._inner.close()
