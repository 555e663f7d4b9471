"""Retries that never create twice: a POST whose answer was a 5xx or was lost may have created
its comment or thread already, so it is retried only on the answer that says it was not
processed (a rate limit); the caller then reads what exists instead."""

from __future__ import annotations

from typing import Any


def create_once(base: type[Any], rate_limited: int) -> type[Any]:
    """``base`` (urllib3's Retry or a subclass) retrying a POST only on ``rate_limited``; POST
    must be left out of its ``allowed_methods`` so a read error after sending is not retried."""

    class CreateOnce(base):  # type: ignore[misc]
        def is_retry(self, method: str, status_code: int, has_retry_after: bool = False) -> bool:
            if method.upper() == "POST":
                return status_code == rate_limited and bool(
                    super().is_retry("GET", status_code, has_retry_after)
                )
            return bool(super().is_retry(method, status_code, has_retry_after))

    return CreateOnce
