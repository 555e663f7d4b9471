"""The front's resolver: a name is looked up once, later requests never wait on a lookup."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import pytest

from mlops_ci.serve.resolver import StickyResolver

pytestmark = pytest.mark.timeout(30)


class Inner:
    """A resolver whose lookups the test holds up or makes fail."""

    def __init__(self) -> None:
        self.calls = 0
        self.hold = asyncio.Event()
        self.hold.set()
        self.fail = False
        self.address = "10.89.0.2"

    async def resolve(self, host: str, port: int = 0, family: Any = socket.AF_INET) -> list[Any]:
        self.calls += 1
        await self.hold.wait()
        if self.fail:
            raise OSError("Temporary failure in name resolution")
        return [{"hostname": host, "host": self.address, "port": port, "family": family,
                 "proto": 0, "flags": 0}]  # fmt: skip

    async def close(self) -> None:
        pass


def test_later_requests_get_the_last_answer_while_a_slow_refresh_runs() -> None:
    async def scenario() -> None:
        inner = Inner()
        resolver = StickyResolver(refresh_s=0.0, inner=inner)  # type: ignore[arg-type]
        (first,) = await resolver.resolve("mlops-ci-iris-prod-v1", 8080)
        assert first["host"] == "10.89.0.2" and inner.calls == 1
        inner.hold.clear()  # the engine's DNS now hangs (it is reloading)
        inner.address = "10.89.0.9"
        (stale,) = await asyncio.wait_for(resolver.resolve("mlops-ci-iris-prod-v1", 8080), 0.5)
        assert stale["host"] == "10.89.0.2" and inner.calls == 2  # refresh started, not awaited
        inner.hold.set()
        await asyncio.sleep(0.05)
        (fresh,) = await resolver.resolve("mlops-ci-iris-prod-v1", 8080)
        assert fresh["host"] == "10.89.0.9"  # the background refresh landed

        inner.fail = True  # a failed refresh keeps the last good answer
        await resolver.resolve("mlops-ci-iris-prod-v1", 8080)
        await asyncio.sleep(0.05)
        (kept,) = await resolver.resolve("mlops-ci-iris-prod-v1", 8080)
        assert kept["host"] == "10.89.0.9"

        inner.fail, inner.address = False, "10.89.0.12"
        resolver.forget("mlops-ci-iris-prod-v1")  # its connect failed: ask again, and wait
        calls = inner.calls
        (again,) = await resolver.resolve("mlops-ci-iris-prod-v1", 8080)
        assert again["host"] == "10.89.0.12" and inner.calls == calls + 1
        await resolver.close()

    asyncio.run(scenario())


def test_warm_looks_up_new_names_so_no_request_waits_and_ignores_unknown_ones() -> None:
    class Missing(Inner):
        async def resolve(
            self, host: str, port: int = 0, family: Any = socket.AF_INET
        ) -> list[Any]:
            if host == "not-there":
                self.calls += 1
                raise OSError("Name or service not known")
            return await super().resolve(host, port, family)

    async def scenario() -> None:
        inner = Missing()
        resolver = StickyResolver(refresh_s=60.0, inner=inner)  # type: ignore[arg-type]
        await resolver.warm([("mlops-ci-iris-prod-v2", 8080), ("not-there", 8080)])
        assert inner.calls == 2
        inner.hold.clear()  # DNS hangs from now on: the warmed name does not need it
        (v2,) = await asyncio.wait_for(
            resolver.resolve("mlops-ci-iris-prod-v2", 8080, socket.AF_UNSPEC), 0.5
        )
        assert v2["host"] == "10.89.0.2" and inner.calls == 2
        await resolver.warm([("mlops-ci-iris-prod-v2", 8080)])  # known: nothing asked
        assert inner.calls == 2
        await resolver.close()

    asyncio.run(scenario())
