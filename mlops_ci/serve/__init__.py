"""The scoring service (`mlops-ci serve`): FastAPI on uvicorn, from the `serve` extra."""

from __future__ import annotations

import importlib.util

SERVE_MODULES = ("fastapi", "uvicorn", "orjson", "prometheus_client", "aiohttp")


def missing_modules() -> list[str]:
    """What the `serve` extra brings that this environment lacks (checked before importing)."""
    return [m for m in SERVE_MODULES if importlib.util.find_spec(m) is None]
