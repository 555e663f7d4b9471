"""Request bodies and JSON answers of the service: a body read within its size and time limits,
a header that must be a whole number, a JSON response with numpy arrays in it."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from mlops_ci.serve.payload import PayloadError
from mlops_ci.serve.protocol import within


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(
        orjson.dumps(data, option=orjson.OPT_SERIALIZE_NUMPY),
        status_code=status,
        media_type="application/json",
        headers=headers,
    )


async def read_body(request: Request, limit: int, timeout: float = 30.0) -> bytes:
    """The body, at most ``limit`` bytes, all arrived within ``timeout`` seconds (a slow
    client holds no slot for ever: 408)."""
    declared = int_header(request.headers.get("content-length"))
    if declared is not None and declared > limit:
        raise PayloadError(413, f"request body of {declared} bytes is over the {limit}-byte limit")
    chunks: list[bytes] = []

    async def read() -> None:
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise PayloadError(413, f"request body is over the {limit}-byte limit")
            chunks.append(chunk)

    try:
        await within(timeout, read())
    except asyncio.TimeoutError:
        raise PayloadError(
            408, f"the request body did not arrive within {timeout:g} s (serve.read_timeout_s)"
        ) from None
    except ClientDisconnect:  # nobody to answer: 499 in the access log and metrics, as nginx
        raise PayloadError(
            499, "the client closed the connection before its body arrived"
        ) from None
    return b"".join(chunks)


def int_header(value: str | None) -> int | None:
    if value is None:
        return None
    # str.isdigit accepts '²' and other digits int() refuses: only ASCII 0-9, bounded.
    if not value.isascii() or not value.isdigit() or len(value) > 12:
        raise PayloadError(400, f"header value '{value[:40]}' must be a whole number")
    return int(value)
