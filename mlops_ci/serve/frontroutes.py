"""The docker front's routes: which container serves each version and the share of unpinned
traffic each takes, as the admin API sets them and ``front.json`` keeps them. An upstream is
accepted only if it is a version container of this environment (``UpstreamRule``:
``http://NAME-vVERSION:PORT`` on its own network), so neither the admin API nor an edited
``front.json`` can point the front at another host (no SSRF)."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

STATE_FILE = "front.json"


class FrontError(ValueError):
    """A refused admin change; the message says which field."""


_VERSION = re.compile(r"[A-Za-z0-9._-]{1,64}")


# Why an upstream URL for a version is refused, or None when it is one the front may use.
UpstreamCheck = Callable[[str, str], str | None]


@dataclass(frozen=True)
class UpstreamRule:
    """The only upstreams a docker front takes: its environment's version containers, by
    the name the docker target gives them, on the port they listen on."""

    base: str  # mlops-ci-MODEL-ENV
    port: int

    def url(self, version: str) -> str:
        return f"http://{self.base}-v{version}:{self.port}"

    def __call__(self, version: str, url: str) -> str | None:
        if not _VERSION.fullmatch(version):
            return f"version '{version[:64]}' is not a version name (letters, digits, . _ -)"
        if url.rstrip("/") == self.url(version):
            return None
        return f"version '{version}' must be {self.url(version)} (a version container here)"


@dataclass(frozen=True)
class Routes:
    """Which container serves each version, and the share of unpinned traffic each takes."""

    upstreams: dict[str, str]  # version -> base URL
    weights: dict[str, float]  # version -> weight (any scale; share = weight / total)

    def choose(self, draw: float) -> str | None:
        """The version for a uniform ``draw`` in [0, 1), or None when no version has weight."""
        total = sum(self.weights.values())
        if total <= 0:
            return None
        point, seen = draw * total, 0.0
        chosen = None
        for version, weight in self.weights.items():
            if weight > 0:
                chosen = version
                seen += weight
                if point < seen:
                    return version
        return chosen

    def to_json(self) -> dict[str, Any]:
        return {"upstreams": self.upstreams, "weights": self.weights}


def parse_routes(body: Any, allowed: UpstreamCheck) -> Routes:
    """Routes from an admin request body ``{"upstreams": {...}, "weights": {...}}``; each
    upstream must pass ``allowed``."""
    if not isinstance(body, dict):
        raise FrontError('the body must be {"upstreams": {...}, "weights": {...}}')
    upstreams, weights = body.get("upstreams"), body.get("weights", {})
    if not isinstance(upstreams, dict) or not all(
        isinstance(k, str) and isinstance(v, str) and v.startswith(("http://", "https://"))
        for k, v in upstreams.items()
    ):
        raise FrontError("'upstreams' must map each version to an http(s):// URL")
    for version, url in upstreams.items():
        refused = allowed(version, url)
        if refused:
            raise FrontError(f"upstreams: {refused}")
    if not isinstance(weights, dict):
        raise FrontError("'weights' must map versions to numbers >= 0")
    for version, weight in weights.items():
        if version not in upstreams:
            raise FrontError(f"weights: version '{version}' has no upstream")
        if type(weight) not in (int, float) or not 0 <= weight <= 1e9:
            raise FrontError(f"weights: the weight of version '{version}' must be a number >= 0")
    return Routes(
        {str(k): v.rstrip("/") for k, v in upstreams.items()},
        {str(k): float(v) for k, v in weights.items()},
    )


def load_routes(state_dir: Path, allowed: UpstreamCheck) -> Routes:
    """The routes a previous run of the front left (if still allowed), else none."""
    try:
        return parse_routes(orjson.loads((state_dir / STATE_FILE).read_bytes()), allowed)
    except (OSError, orjson.JSONDecodeError, FrontError):
        return Routes({}, {})
