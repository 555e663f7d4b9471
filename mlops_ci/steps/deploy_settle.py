"""Settling what a deploy left unfinished on an endpoint that routes by weight.

A deploy a killed process left (its journal ``running``, its lock free) is settled by the next
verb that takes the environment's lock — ``deploy``, ``status``, ``rollback`` — from what the
endpoint serves now, not from what the journal hoped: the version going in alone at 100 % and
healthy over a window is finished (the alias moves, the records are written) — unless the dead
deploy had turned against it (a failed step, a signal, an error, already reverting); anything
else is reverted to the version it started from at 100 % (the version going in unloaded, the
alias back on the old version if the dead deploy had moved it). Either way the
version's tags, ``.mlops/deploy.json`` and the audit log say which (``resolved``), and the
journal is closed. ``rollback`` only ever reverts.

``finish_at_full`` is also what a deploy does when its version already takes all traffic but
the alias names another (the 100 % window of a killed deploy): it is not "unchanged".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mlops_ci.config.types import Config, DeployEnv
from mlops_ci.errors import ServiceError
from mlops_ci.records import JobFolder, append_line
from mlops_ci.registry import ModelRegistry, VersionRecord
from mlops_ci.steps.deploy_journal import PLANNING, Journal
from mlops_ci.steps.deploy_record import DeployResult, record
from mlops_ci.steps.gates import now_iso
from mlops_ci.steps.promotion_records import move_alias
from mlops_ci.targets import Targets, target_for
from mlops_ci.targets.base import RoutedTarget
from mlops_ci.targets.judging import Progress, StepRecord, judge_step, probe_rows, split_text


@dataclass(frozen=True)
class Outcome:
    """How a version that takes all traffic was settled: serving, or rolled back."""

    status: str  # serving | rolled_back
    split: dict[str, float]
    steps: list[StepRecord]


def revert(target: RoutedTarget, new: str, back_to: str | None) -> dict[str, float]:
    """``back_to`` alone at 100 % (loaded, or the endpoint restarted with it, if it must be)
    and ``new`` unloaded; with nothing to go back to, the endpoint is stopped. The split now."""
    if back_to is None:
        target.stop()
        return {}
    if not target.running():
        target.start(back_to)
        return {back_to: 100.0}
    versions = target.traffic()["versions"]
    if back_to not in versions:
        target.load(back_to)
    target.set_split({back_to: 100.0})
    if new != back_to and new in versions:
        target.unload(new)
    return {back_to: 100.0}


def finish_at_full(
    config: Config,
    env: DeployEnv,
    target: RoutedTarget,
    new: str,
    back_to: str | None,
    progress: Progress,
) -> Outcome:
    """``new`` takes all traffic: judge it over one window as the last rollout step is
    judged; healthy, it serves (the caller moves the alias), else ``back_to`` goes back."""
    try:
        rows = probe_rows(config, env.rollout.probe_requests, target.columns(new))
        others = {v: 0.0 for v in target.traffic()["weights"] if v != new}  # kept at 0 %
        step = judge_step(target, env, new, None, 100.0, {**others, new: 100.0}, rows, progress)
        if step.passed:
            return Outcome("serving", target.traffic()["weights"], [step])
        progress(f"v{new} is unhealthy at 100 %: putting v{back_to or '-'} back")
        return Outcome("rolled_back", revert(target, new, back_to), [step])
    except OSError as err:
        raise ServiceError(f"{env.target} endpoint of {env.name}: {err}") from None


def settle(
    config: Config,
    registry: ModelRegistry,
    env: DeployEnv,
    targets: Targets,
    progress: Progress,
    verb: str,
    finish: bool = True,
) -> DeployResult | None:
    """Settle the deploy a killed process left in ``env`` (call with its lock held); None
    when there is none. ``finish=False`` (rollback): revert it whatever it left."""
    journal = Journal(config.root, env.name)
    dead = journal.dead()
    if dead is None:
        return None
    name, new = config.model.name, str(dead["version"])
    aliased = registry.get_version_by_alias(name, env.alias)
    # the version to go back to: the alias's, unless the dead deploy had moved it already
    # (killed while recording), then the one it started from
    if aliased is not None and aliased.version != new:
        back_to: str | None = aliased.version
    else:
        back_to = _text(dead.get("back_to")) or _text(dead.get("previous"))
        back_to = None if back_to == new else back_to
    who = f"pid {dead.get('pid')}, by {dead.get('by')} at {dead.get('started_at')}"
    ended, left_by = "was killed", "a killed process"
    if dead.get("error"):  # an error ended it after it touched the endpoint
        ended, left_by = f"failed ({dead['error']})", "an error"
    where = f"step {dead['step']:g} %" if dead.get("step") is not None else dead.get("phase")
    if dead.get("phase") == PLANNING:
        progress(f"a deploy of v{new} to {env.name} {ended} ({who}) before it moved traffic")
        _abandoned(config, journal, dead, verb, "killed before it touched the endpoint")
        return None
    kind = targets.get(env.target)
    routed = kind is None or kind.routed  # an unknown target: target_for names it
    target = target_for(config, env, registry, None, targets) if routed else None
    if target is None or not target.routed or not target.running():
        why = "it renders manifests" if target is None else "its endpoint is not running"
        progress(f"a deploy of v{new} to {env.name} {ended} ({who}); {why}: nothing to settle")
        _abandoned(config, journal, dead, verb, f"{env.target}: {why}")
        return None
    weights = target.traffic()["weights"]
    progress(
        f"a deploy of v{new} to {env.name} {ended} at {where} ({who}); "
        f"the endpoint serves {split_text(weights)}, alias '{env.alias}' names "
        f"v{aliased.version if aliased else '-'}"
    )
    steps: list[StepRecord] = []
    if dead.get("outcome") == "ab" and weights == dead.get("split"):
        status, split = "ab", weights  # killed while recording the A/B split it holds
    elif finish and _decided_for(dead) and [v for v, w in weights.items() if w > 0] == [new]:
        outcome = finish_at_full(config, env, target, new, back_to, progress)
        status, split, steps = outcome.status, outcome.split, outcome.steps
    else:
        status, split = "rolled_back", revert(target, new, back_to)
    resolved = "finished" if status == "serving" else "reverted"
    if resolved == "reverted" and aliased is not None and aliased.version == new and back_to:
        # it had moved before the kill: back too
        move_alias(registry, name, env.alias, back_to, config.registry.production_alias, new)
    note = (
        f"{verb} finished the deploy {left_by} left at 100 % ({who})"
        if resolved == "finished"
        else f"{verb} reverted the deploy {left_by} left at {where} ({who}): "
        + (f"v{back_to} back at 100 %" if back_to else "nothing served before it: stopped")
    )
    progress(note)
    previous = _previous(registry, name, aliased, new, dead)
    result = DeployResult(
        name=name,
        version=new,
        env=env.name,
        target=env.target,
        status=status,
        previous=previous.version if previous else None,
        split=split,
        steps=steps,
        gates=[],
        approval=None,
        by=str(dead.get("by", "unknown")),
        at=now_iso(),
        url=target.url,
        alias=env.alias if status == "serving" else None,
        note=note,
        resolved=resolved,
    )
    record(config, registry, result, previous)
    journal.settled(dead, resolved, verb)
    return result


def _decided_for(dead: dict[str, Any]) -> bool:
    """Whether the dead deploy had not turned against its version: it was not reverting or
    restarting, no signal or error had ended it, its outcome (if it had one) was serving and
    every step it judged passed. Only then may a version alone at 100 % be finished."""
    if dead.get("phase") in ("reverting", "restarting"):
        return False
    if dead.get("interrupted") or dead.get("error") or dead.get("outcome") not in (None, "serving"):
        return False
    judged = dead.get("judged") or []
    return isinstance(judged, list) and all(
        isinstance(step, list) and len(step) == 2 and step[1] is True for step in judged
    )


def _text(value: Any) -> str | None:
    return str(value) if value is not None and value != "" else None


def _previous(
    registry: ModelRegistry,
    name: str,
    aliased: VersionRecord | None,
    new: str,
    dead: dict[str, Any],
) -> VersionRecord | None:
    """The version the dead deploy replaces: the alias's, or, when the dead deploy had moved
    the alias already, the one it named when that deploy began."""
    if aliased is not None and aliased.version != new:
        return aliased
    before = dead.get("previous")
    return registry.get_version(name, str(before)) if before and before != new else None


def _abandoned(config: Config, journal: Journal, dead: dict[str, Any], verb: str, why: str) -> None:
    """A dead deploy with nothing live to settle: the audit log and the journal say so."""
    line = {
        "action": "settle",
        "name": config.model.name,
        "version": dead.get("version"),
        "env": dead.get("env"),
        "status": "killed",
        "resolved": "abandoned",
        "by": dead.get("by"),
        "at": now_iso(),
        "note": f"{verb}: the deploy a killed process (pid {dead.get('pid')}) left: {why}",
    }
    append_line(JobFolder(config.root).deploy_audit, line)
    journal.settled(dead, "abandoned", verb)
