"""Traffic split between the versions one endpoint serves: weighted choice, pinning, live change.

The split is an immutable value swapped in whole, so a request never sees half a change. With
several worker processes the split and the loaded versions live in a JSON file that every worker
re-reads when it changes (``StateFile``), so an admin call to one worker moves them all.
"""

from __future__ import annotations

import bisect
import itertools
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from mlops_ci.records import write_text_atomic
from mlops_ci.serve.payload import PayloadError, echoed
from mlops_ci.serve.shadow import Shadow


@dataclass(frozen=True)
class Split:
    """Weights per version (any non-negative numbers; a version's share is weight / total)."""

    weights: dict[str, float]
    _versions: tuple[str, ...] = field(init=False, repr=False, compare=False)
    _cumulative: tuple[float, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_versions", tuple(self.weights))
        object.__setattr__(self, "_cumulative", tuple(itertools.accumulate(self.weights.values())))

    def choose(self, draw: float) -> str:
        """The version for a uniform ``draw`` in [0, 1)."""
        index = bisect.bisect_right(self._cumulative, draw * self._cumulative[-1])
        return self._versions[min(index, len(self._versions) - 1)]

    def shares(self) -> dict[str, float]:
        total = self._cumulative[-1]
        return {v: w / total for v, w in self.weights.items()}


def parse_split(value: Any, loaded: set[str]) -> Split:
    """A split from JSON ``{"version": weight}``; every version must be loaded, one weight > 0."""
    if not isinstance(value, dict) or not value:
        raise PayloadError(422, "'weights' must be an object {\"version\": weight, ...}")
    weights: dict[str, float] = {}
    for version, weight in value.items():
        if version not in loaded:
            known = ", ".join(sorted(loaded))
            raise PayloadError(422, f"version '{version}' is not loaded (loaded: {known})")
        if type(weight) not in (int, float) or not 0 <= weight <= 1e9:
            raise PayloadError(422, f"weight of version '{version}' must be a number >= 0")
        weights[version] = float(weight)
    if sum(weights.values()) <= 0:
        raise PayloadError(422, "at least one weight must be above 0")
    return Split(weights)


class Router:
    """Chooses the version for each request; ``x-model-version`` pins one."""

    def __init__(self, versions: list[str], split: Split) -> None:
        self.versions = set(versions)
        self.split = split
        self._random = random.Random()

    def route(self, pinned: str | None) -> str:
        if pinned is not None:
            if pinned not in self.versions:
                known = ", ".join(sorted(self.versions))
                raise PayloadError(
                    404, f"x-model-version '{echoed(pinned)}' is not served here (served: {known})"
                )
            return pinned
        return self.split.choose(self._random.random())


@dataclass(frozen=True)
class SharedState:
    """What every worker must agree on: the split, and which package folder each version is."""

    weights: dict[str, float]
    models: dict[str, str]  # version -> package folder
    shadow: Shadow | None = None


class StateFile:
    """The state shared by worker processes: written atomically, re-read at most every
    ``interval`` seconds and only when its modification time changed."""

    def __init__(self, path: Path, interval: float = 0.2) -> None:
        self.path = path
        self.interval = interval
        self._checked = 0.0
        self._mtime = 0

    def write(self, state: SharedState) -> None:
        shadow = state.shadow
        data = {
            "weights": state.weights,
            "models": state.models,
            "shadow": None if shadow is None else [shadow.version, shadow.percent],
        }
        write_text_atomic(self.path, orjson.dumps(data).decode())
        self._mtime = os.stat(self.path).st_mtime_ns

    def poll(self) -> SharedState | None:
        """The state when another process changed it since this one last looked."""
        now = time.monotonic()
        if now - self._checked < self.interval:
            return None
        self._checked = now
        try:
            mtime = os.stat(self.path).st_mtime_ns
            if mtime == self._mtime:
                return None
            data = orjson.loads(self.path.read_bytes())
        except (OSError, orjson.JSONDecodeError):
            return None  # keep the state in force; the writer replaces the file whole
        self._mtime = mtime
        shadow = data.get("shadow")
        return SharedState(
            {str(k): float(v) for k, v in data["weights"].items()},
            {str(k): str(v) for k, v in data["models"].items()},
            None if not shadow else Shadow(str(shadow[0]), float(shadow[1])),
        )
