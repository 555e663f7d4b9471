"""What the deploy step asks of a serving endpoint during a rollout, whatever runs it: its
Prometheus metrics, probe requests pinned to one version, and calls to its admin API."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

from mlops_ci.errors import ServiceError


def metrics_text(url: str) -> str:
    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as answer:
        return str(answer.read().decode())


def probe(url: str, version: str, rows: list[Any]) -> list[int]:
    """One single-row /score request per row, pinned to ``version``; their statuses."""
    statuses = []
    for row in rows:
        request = urllib.request.Request(
            f"{url}/score",
            data=json.dumps({"inputs": [row]}).encode(),
            headers={"content-type": "application/json", "x-model-version": version},
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as answer:
                statuses.append(answer.status)
        except urllib.error.HTTPError as err:
            statuses.append(err.code)
    return statuses


def admin_call(
    url: str, token: str, method: str, body: dict[str, Any] | None, who: str, timeout: float
) -> dict[str, Any]:
    """One JSON call to an admin endpoint with its bearer token; any failure is a one-line
    ServiceError starting with ``who`` (the token is never in it)."""
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode() if body is not None else None,
        method=method,
        headers={"authorization": f"Bearer {token}", "content-type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            found: dict[str, Any] = json.loads(answer.read())
            return found
    except urllib.error.HTTPError as err:
        detail = err.read().decode(errors="replace")[:300]
        raise ServiceError(f"{who}: {method} {url} answered {err.code}: {detail}") from None
    except OSError as err:
        raise ServiceError(f"{who}: {method} {url} failed: {err}") from None
