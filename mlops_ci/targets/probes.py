"""What the deploy step asks of a serving endpoint during a rollout, whatever runs it: its
Prometheus metrics, and probe requests pinned to one version."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any


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
