"""The deploy target port: what the deploy, rollback, undeploy and status steps ask of a target.

Targets differ in kind, and the ports say so rather than one port whose methods some targets
cannot do. Every target (``DeployTarget``) has a name and can undeploy an environment. A
``RoutedTarget`` (``local``, ``docker``) serves versions side by side behind one endpoint and
routes by weight: the deploy step loads a new version at 0 % and moves the split step by step,
judging each from the endpoint's own metrics, and ``status`` reads its live split. A
``ManifestTarget`` (``kubernetes``) renders manifests for a split and applies or writes them:
it reports no live split and no metrics. ``routed`` tells them apart (mypy narrows a ``Target``
on it). ``mlops_ci.targets`` maps mlops.yaml's ``deploy.ENV.target`` to one of them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypedDict

from mlops_ci.errors import ServiceError

if TYPE_CHECKING:
    from mlops_ci.registry import VersionRecord


class Traffic(TypedDict):
    """What a routed endpoint serves now."""

    weights: dict[str, float]  # version -> percent of the traffic
    versions: list[str]  # the versions loaded, at any weight (0 % included)


@dataclass(frozen=True)
class Stopped:
    """What undeploying an environment stopped: one line per process, container or object,
    the versions that served, and ``note`` when only the user can stop it (how)."""

    stopped: list[str] = field(default_factory=list)
    versions: list[str] = field(default_factory=list)
    note: str | None = None


@dataclass(frozen=True)
class Rendered:
    """What a manifest target did with a deployment's split."""

    status: str  # written | applied
    split: dict[str, float]
    manifests: Path
    plan: list[str] = field(default_factory=list)  # what was (or would be) applied, one a line
    note: str | None = None
    complete: bool = False  # the version takes all traffic where it was applied


class TargetUnavailable(ServiceError):
    """The target's engine does not answer (no Docker engine): ``what`` is missing, ``why``."""

    def __init__(self, what: str, why: str) -> None:
        super().__init__(f"no {what}: {why}")
        self.what = what
        self.why = why


class DeployTarget(Protocol):
    """One environment on its target: what every target does."""

    @property
    def name(self) -> str:
        """mlops.yaml's ``deploy.ENV.target`` for it (local, docker, kubernetes)."""
        ...

    @property
    def routed(self) -> bool:
        """Whether it routes by weight (a ``RoutedTarget``) or renders manifests."""
        ...

    def undeploy(self) -> Stopped:
        """Stop all the environment serves on this target."""
        ...


class RoutedTarget(DeployTarget, Protocol):
    """An endpoint that serves several versions at once and routes by weight between them,
    reporting its split and its Prometheus metrics (the local process, the docker front)."""

    @property
    def routed(self) -> Literal[True]: ...

    @property
    def url(self) -> str: ...

    def running(self) -> bool:
        """Whether the endpoint runs (something serves on its port)."""
        ...

    def traffic(self) -> Traffic: ...

    def columns(self, version: str) -> tuple[str, ...]:
        """The feature columns ``version``'s package takes, by name (empty: it names none)."""
        ...

    def start(self, version: str) -> None:
        """Start the endpoint serving ``version`` alone (a first deployment, or a restart)."""
        ...

    def load(self, version: str) -> None:
        """Load ``version`` beside the versions served, at 0 %."""
        ...

    def unload(self, version: str) -> None:
        """Take ``version`` out (it must take no traffic); one that is the shadow stops being
        it first."""
        ...

    def set_shadow(self, version: str | None, percent: float = 100.0) -> None:
        """Let ``version`` (loaded) score ``percent`` % of requests unseen; None: no shadow."""
        ...

    def set_split(self, weights: dict[str, float]) -> None:
        """Route by ``weights`` (version -> percent); a loaded version not named gets 0 %."""
        ...

    def metrics_text(self) -> str:
        """The endpoint's Prometheus metrics (per version: requests, 5xx, latency buckets)."""
        ...

    def probe(self, version: str, rows: list[Any]) -> list[int]:
        """Send ``rows`` to ``version`` (pinned); the status codes."""
        ...

    def stop(self) -> bool:
        """Stop the endpoint; whether one ran."""
        ...


class ManifestTarget(DeployTarget, Protocol):
    """Manifests for a split between versions, applied with a kubeconfig or written for the
    user (kubectl, GitOps): no live split, no metrics to judge a step by."""

    @property
    def routed(self) -> Literal[False]: ...

    def deploy(
        self, version: VersionRecord, previous: VersionRecord | None, dry_run: bool
    ) -> Rendered:
        """``version`` at the rollout's first step beside ``previous`` (alone without one)."""
        ...

    def switch(self, version: VersionRecord) -> None:
        """The manifests of ``version`` alone at 100 % (a rollback), written."""
        ...


Target = RoutedTarget | ManifestTarget
