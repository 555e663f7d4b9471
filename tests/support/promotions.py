"""Promotion records under faults: a registry that dies or loses an answer at a chosen call, and
the checks that every version's promote/replace records agree with where the alias went."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from mlops_ci.errors import ServiceError
from mlops_ci.registry import ModelRegistry
from mlops_ci.steps.promotion_records import promotion_id


class Killed(BaseException):
    """The process died here (kill -9): nothing after this call runs."""


class Interrupting:
    """Delegates to ``inner``, counting calls (each tag of ``set_version_tags`` is a call of its
    own, as the MLflow adapter writes them); ``hooks[n]`` runs before call ``n`` (0-based):
    ``kill`` raises Killed there, anything else is a callable (another process's turn)."""

    def __init__(self, inner: Any, hooks: dict[int, Callable[[], None]] | None = None) -> None:
        self.inner = inner
        self.hooks = dict(hooks or {})
        self.calls: list[str] = []

    def _tick(self, what: str) -> None:
        hook = self.hooks.pop(len(self.calls), None)
        self.calls.append(what)
        if hook is not None:
            hook()

    def set_version_tags(self, name: str, version: str, tags: dict[str, str]) -> None:
        for key, value in tags.items():
            self._tick(f"tag v{version} {key}")
            self.inner.set_version_tags(name, version, {key: value})

    def __getattr__(self, method: str) -> Any:
        real = getattr(self.inner, method)
        if not callable(real):
            return real

        def call(*args: Any, **kwargs: Any) -> Any:
            self._tick(method)
            return real(*args, **kwargs)

        return call


def kill() -> None:
    raise Killed


class LosingAlias(Interrupting):
    """An alias write that errs after a timeout: ``lands`` says whether it reached the server."""

    def __init__(self, inner: Any, lands: bool) -> None:
        super().__init__(inner)
        self.lands = lands

    def set_alias(self, name: str, alias: str, version: str) -> None:
        self._tick("set_alias")
        if self.lands:
            self.inner.set_alias(name, alias, version)
        raise ServiceError("MLflow at fake did not answer set_registered_model_alias within 6 s")


def _tags(registry: ModelRegistry, name: str, version: str) -> dict[str, str]:
    return registry.get_version(name, version).tags


def check_history(
    registry: ModelRegistry, name: str, alias: str, history: list[str], never: set[str]
) -> None:
    """The alias went through ``history`` in order, one promotion after another (no race):
    each version in it records its promotion, each but the last was replaced by the next, the
    last holds the alias with its promotion open; the versions in ``never`` record none."""
    holder = registry.get_version_by_alias(name, alias)
    assert holder is not None and holder.version == history[-1], (holder, history)
    for before, after in zip(history, history[1:], strict=False):
        tags = _tags(registry, name, before)
        assert tags.get(f"mlops.replaced.{alias}.by_version") == after, (before, after, tags)
        assert tags.get(f"mlops.replaced.{alias}.of") == promotion_id(tags, alias), tags
        assert tags.get(f"mlops.replaced.{alias}.note") == "", (before, tags)
    for version in never:
        tags = _tags(registry, name, version)
        assert f"mlops.promoted.{alias}.at" not in tags, (version, tags)
        assert f"mlops.replaced.{alias}.at" not in tags, (version, tags)
    check_consistent(registry, name, alias)


def check_consistent(registry: ModelRegistry, name: str, alias: str) -> None:
    """Whatever raced: the holder's promotion is open and carries no ``replaced`` newer than
    it; every other promoted version was replaced by a promoted version, not before its own
    promotion."""
    holder = registry.get_version_by_alias(name, alias)
    assert holder is not None
    promoted = {
        v.version: v.tags
        for v in registry.find_versions_with_tag(name, f"mlops.promoted.{alias}.at")
    }
    mine = promoted.get(holder.version) or {}
    if mine:
        assert mine.get(f"mlops.replaced.{alias}.of") != promotion_id(mine, alias), mine
        assert mine.get(f"mlops.replaced.{alias}.at", "") <= mine[f"mlops.promoted.{alias}.at"]
    for version, tags in promoted.items():
        if version == holder.version:
            continue
        assert tags.get(f"mlops.replaced.{alias}.of") == promotion_id(tags, alias), (version, tags)
        assert tags[f"mlops.replaced.{alias}.by_version"] in promoted, (version, tags)
        assert tags[f"mlops.replaced.{alias}.at"] >= tags[f"mlops.promoted.{alias}.at"], tags
