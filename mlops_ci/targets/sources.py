"""A routed endpoint with where it starts each version from, as one ``RoutedTarget``.

``LocalTarget`` starts a version from its package folder, ``DockerTarget`` from its image: an
``Endpoint`` of a source type. ``Sourced`` binds one to a function giving each version's source,
so the rollout starts and loads versions by number, whatever the target. ``Packages`` fetches a
version's package from the registry once per deployment (its columns make the probe rows; the
local target serves its folder).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, Literal, Protocol, TypeVar

from mlops_ci.registry import ModelRegistry
from mlops_ci.targets.base import Stopped, Traffic

if TYPE_CHECKING:
    from mlops_ci.serve.model import ModelSpec

S = TypeVar("S")
S_contra = TypeVar("S_contra", contravariant=True)


class Endpoint(Protocol[S_contra]):
    """A routed target's own class, which takes the source of a version to start it."""

    @property
    def name(self) -> str: ...
    @property
    def url(self) -> str: ...
    def running(self) -> bool: ...
    def traffic(self) -> dict[str, Any]: ...
    def start(self, version: str, source: S_contra, /) -> object: ...
    def load(self, version: str, source: S_contra, /) -> object: ...
    def unload(self, version: str) -> object: ...
    def set_shadow(self, version: str | None, percent: float) -> object: ...
    def set_split(self, weights: dict[str, float]) -> object: ...
    def metrics_text(self) -> str: ...
    def probe(self, version: str, rows: list[Any]) -> list[int]: ...
    def stop(self) -> bool: ...
    def undeploy(self) -> Stopped: ...


class Packages:
    """The packages of one model's versions, each downloaded into ``folder`` at most once and
    checked against the sha256 its version records."""

    def __init__(self, registry: ModelRegistry, name: str, folder: Path) -> None:
        self.registry = registry
        self.name = name
        self.folder = folder
        self._specs: dict[str, ModelSpec] = {}

    def spec(self, version: str) -> ModelSpec:
        if version not in self._specs:
            from mlops_ci.serve.server import Weighted, from_registry

            refs = [Weighted(version, None)]
            ((spec, _),) = from_registry(self.registry, self.name, refs, self.folder)
            self._specs[version] = spec
        return self._specs[version]


class Sourced(Generic[S]):
    """``endpoint`` started from ``source(version)``, its versions' packages in ``packages``."""

    routed: Literal[True] = True

    def __init__(
        self, endpoint: Endpoint[S], source: Callable[[str], S], packages: Packages
    ) -> None:
        self.endpoint = endpoint
        self.source = source
        self.packages = packages

    @property
    def name(self) -> str:
        return self.endpoint.name

    @property
    def url(self) -> str:
        return self.endpoint.url

    def running(self) -> bool:
        return self.endpoint.running()

    def traffic(self) -> Traffic:
        answer = self.endpoint.traffic()
        return {"weights": answer["weights"], "versions": list(answer["versions"])}

    def columns(self, version: str) -> tuple[str, ...]:
        return self.packages.spec(version).features

    def start(self, version: str) -> None:
        self.endpoint.start(version, self.source(version))

    def load(self, version: str) -> None:
        self.endpoint.load(version, self.source(version))

    def unload(self, version: str) -> None:
        self.endpoint.unload(version)

    def set_split(self, weights: dict[str, float]) -> None:
        self.endpoint.set_split(weights)

    def set_shadow(self, version: str | None, percent: float = 100.0) -> None:
        self.endpoint.set_shadow(version, percent)

    def metrics_text(self) -> str:
        return self.endpoint.metrics_text()

    def probe(self, version: str, rows: list[Any]) -> list[int]:
        return self.endpoint.probe(version, rows)

    def stop(self) -> bool:
        return self.endpoint.stop()

    def undeploy(self) -> Stopped:
        return self.endpoint.undeploy()
