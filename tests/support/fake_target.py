"""An in-memory deploy target that routes by weight: it records what a step asked of it."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Literal

from mlops_ci.config.types import Config, DeployEnv
from mlops_ci.errors import ServiceError
from mlops_ci.registry import ModelRegistry
from mlops_ci.targets import TargetKind, Targets
from mlops_ci.targets.base import Stopped, Target, Traffic


class FakeTarget:
    """Implements mlops_ci.targets.base.RoutedTarget with dicts.

    ``serving``: the versions loaded and their weights (None: no endpoint runs). Each metrics
    scrape counts ``requests_per_scrape`` requests, all fast, for every version with traffic;
    the newest version (the last started or loaded) answers its requests with 500 while the
    split gives it ``unhealthy_at`` percent. ``on_split`` is called after each split is set.
    """

    routed: Literal[True] = True

    def __init__(
        self,
        serving: Mapping[str, float] | None = None,
        unhealthy_at: float | None = None,
        name: str = "local",
        requests_per_scrape: int = 100,
        on_split: Callable[[dict[str, float]], None] | None = None,
    ) -> None:
        self.name = name
        self.url = f"http://{name}.invalid:8080"
        self.weights: dict[str, float] | None = None if serving is None else dict(serving)
        self.unhealthy_at = unhealthy_at
        self.requests_per_scrape = requests_per_scrape
        self.on_split = on_split
        self.newest: str | None = None
        # what was asked, in order
        self.started: list[str] = []
        self.loaded: list[str] = []
        self.unloaded: list[str] = []
        self.splits: list[dict[str, float]] = []
        self.probed: list[tuple[str, int]] = []
        self.stops = 0
        self.shadow: tuple[str, float] | None = None
        self.shadows: list[tuple[str, float] | None] = []
        self._answered: dict[str, int] = {}
        self._failed: dict[str, int] = {}

    # --- RoutedTarget ----------------------------------------------------------------------
    def running(self) -> bool:
        return self.weights is not None

    def traffic(self) -> Traffic:
        weights = self._serving()
        return {"weights": dict(weights), "versions": list(weights)}

    def columns(self, version: str) -> tuple[str, ...]:
        return ()

    def start(self, version: str) -> None:
        self.started.append(version)
        self.weights = {version: 100.0}
        self.newest = version

    def load(self, version: str) -> None:
        self.loaded.append(version)
        self._serving().setdefault(version, 0.0)
        self.newest = version

    def unload(self, version: str) -> None:
        self.unloaded.append(version)
        self._serving().pop(version, None)
        if self.shadow is not None and self.shadow[0] == version:
            self.shadow = None

    def set_shadow(self, version: str | None, percent: float = 100.0) -> None:
        if version is not None and version not in self._serving():
            raise ServiceError(f"fake target: shadow v{version} is not loaded")
        self.shadow = None if version is None else (version, percent)
        self.shadows.append(self.shadow)

    def set_split(self, weights: dict[str, float]) -> None:
        serving = self._serving()
        unknown = set(weights) - set(serving)
        if unknown:
            raise ServiceError(f"fake target: not loaded: {', '.join(sorted(unknown))}")
        self.splits.append(dict(weights))
        self.weights = {v: float(weights.get(v, 0.0)) for v in serving}
        if self.on_split is not None:
            self.on_split(dict(weights))

    def metrics_text(self) -> str:
        for version, weight in self._serving().items():
            if weight <= 0:
                continue
            failing = version == self.newest and weight == self.unhealthy_at
            counts = self._failed if failing else self._answered
            counts[version] = counts.get(version, 0) + self.requests_per_scrape
        lines = []
        for version in sorted(set(self._answered) | set(self._failed)):
            ok, failed = self._answered.get(version, 0), self._failed.get(version, 0)
            labels = f'endpoint="score",model="m",version="{version}"'
            lines += [
                f'mlops_requests_total{{code="200",{labels}}} {ok}',
                f'mlops_requests_total{{code="500",{labels}}} {failed}',
                f'mlops_request_duration_seconds_bucket{{{labels},le="0.001"}} {ok + failed}',
                f'mlops_request_duration_seconds_bucket{{{labels},le="+Inf"}} {ok + failed}',
            ]
        return "\n".join(lines) + "\n"

    def probe(self, version: str, rows: list[Any]) -> list[int]:
        self.probed.append((version, len(rows)))
        return [200] * len(rows)

    def stop(self) -> bool:
        self.stops += 1
        ran, self.weights = self.weights is not None, None
        return ran

    def undeploy(self) -> Stopped:
        if self.weights is None:
            return Stopped()
        versions = list(self.weights)
        self.stop()
        return Stopped([f"the fake endpoint on {self.url}"], versions)

    def _serving(self) -> dict[str, float]:
        if self.weights is None:
            raise ServiceError(f"fake target: nothing runs on {self.url}")
        return self.weights


def fake_targets(target: Target, name: str = "local") -> Targets:
    """A registry of targets with one entry: ``name`` is ``target``, for every environment."""

    def factory(
        config: Config, env: DeployEnv, registry: ModelRegistry, environ: Mapping[str, str] | None
    ) -> Target:
        return target

    return {name: TargetKind(factory, routed=target.routed)}
