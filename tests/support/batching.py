"""Clients for adaptive batching's tests: the same requests sent one at a time (each scored
alone, as with batching off) and all at once (stacked into shared model calls)."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import httpx

Answer = tuple[int, Any, str]  # status, JSON body, x-model-version ("" where none)
Request = tuple[str, "dict[str, Any] | bytes", dict[str, str]]  # path, JSON or raw, headers


async def _post_all(url: str, requests: list[Request], at_once: bool) -> list[Answer]:
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60) as client:

        async def one(path: str, body: dict[str, Any] | bytes, headers: dict[str, str]) -> Answer:
            if isinstance(body, bytes):
                answer = await client.post(path, content=body, headers=headers)
            else:
                answer = await client.post(path, json=body, headers=headers)
            return answer.status_code, answer.json(), answer.headers.get("x-model-version", "")

        if at_once:
            return list(await asyncio.gather(*(one(*r) for r in requests)))
        return [await one(*r) for r in requests]


def post_all(url: str, requests: list[Request], at_once: bool) -> list[Answer]:
    """Each request posted one after the other (``at_once`` False: each scored alone, as
    with batching off), or all concurrently."""
    return asyncio.run(_post_all(url, requests, at_once))


def batched_calls(url: str, version: str) -> tuple[float, float]:
    """(model calls, rows) of ``version`` so far, from ``mlops_batch_size`` in /metrics."""
    return batch_sizes(httpx.get(f"{url}/metrics", timeout=10).text, version)


def batch_sizes(metrics: str, version: str) -> tuple[float, float]:
    """(model calls, rows) from ``mlops_batch_size`` of ``version`` in /metrics text."""
    found = {}
    for kind in ("count", "sum"):
        m = re.search(rf'^mlops_batch_size_{kind}{{[^}}]*version="{version}"[^}}]*}} (\S+)$',
                      metrics, re.M)  # fmt: skip
        found[kind] = float(m.group(1)) if m else 0.0
    return found["count"], found["sum"]
