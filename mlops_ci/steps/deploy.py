"""deploy: a packaged version into an environment, through its gates, by a controlled rollout.

Gates first (a passed comparison; an approval where required), then the target. ``local`` (the
environment's `mlops-ci serve` process) and ``docker`` (each version its own container behind
the environment's `mlops-ci front`) load the version beside the current one at 0 % and move the
split through ``rollout.steps``, judging each step from the endpoint's own metrics (5xx rate,
p99 against the current version) over a window and rolling back to the previous split at the
first unhealthy step; the environment's alias moves only once 100 % is healthy. ``kubernetes``
renders the manifests for the first step's split and applies or writes them. Every attempt is
recorded on the version (tags and a JSON artifact) and in ``.mlops/deploy.json``.

A deploy is a transaction (``deploy_journal``): it holds the environment's lock, settles what
a killed deploy left (``deploy_settle``), writes its intent and each traffic change to the
journal before acting, and closes it with the outcome. SIGTERM or SIGINT during the rollout
puts the split back, records a rollback and exits 143 or 130.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from mlops_ci.config.types import Config, DeployEnv
from mlops_ci.credentials import redact_text
from mlops_ci.errors import GateFailed, InputError, ServiceError
from mlops_ci.records import JobFolder, read_json
from mlops_ci.registry import ModelRegistry, VersionRecord, resolve_version
from mlops_ci.steps.deploy_journal import (
    PLANNING,
    Interrupted,
    Journal,
    interruptible,
    locked,
)
from mlops_ci.steps.deploy_record import DeployResult, record
from mlops_ci.steps.deploy_settle import finish_at_full, revert, settle
from mlops_ci.steps.deploy_shadow import apply_shadow
from mlops_ci.steps.gates import check_gates, live_gate, now_iso
from mlops_ci.targets import TARGETS, Targets, target_for
from mlops_ci.targets.base import ManifestTarget, RoutedTarget, TargetUnavailable
from mlops_ci.targets.judging import Progress, StepRecord, died, judge_step, probe_rows

__all__ = ["SERVING_STATES", "DeployResult", "StepRecord", "deploy", "environment"]
SERVING_STATES = ("serving", "ab")


def deploy(
    config: Config,
    registry: ModelRegistry,
    version_ref: str,
    env_name: str,
    by: str,
    environ: Mapping[str, str],
    progress: Progress = lambda _: None,
    dry_run: bool = False,
    targets: Targets = TARGETS,
) -> DeployResult:
    env = environment(config, env_name)
    with locked(config.root, env.name, "deploy to"):
        settled = settle(config, registry, env, targets, progress, "deploy")
        version = resolve_version(registry, config.model.name, version_ref)
        if settled and settled.status == "serving" and settled.version == version.version:
            return settled  # the killed deploy was of this version: it is done now
        return _deploy(config, registry, version, env, by, environ, progress, dry_run, targets)


def _deploy(
    config: Config,
    registry: ModelRegistry,
    version: VersionRecord,
    env: DeployEnv,
    by: str,
    environ: Mapping[str, str],
    progress: Progress,
    dry_run: bool,
    targets: Targets,
) -> DeployResult:
    name = config.model.name
    if version.tags.get("mlops.package.complete") != "true":
        raise InputError(
            f"{name} v{version.version} is not packaged",
            hint=f"run `mlops-ci package --version {version.version}` first",
        )
    gates, approval = check_gates(version, env, environ)
    previous = registry.get_version_by_alias(name, env.alias)
    if env.require_live_rows is not None:
        live = read_json(JobFolder(config.root).quality)
        serving = previous.version if previous else None
        gates.append(live_gate(live, version.version, serving, env.require_live_rows))
    failed = [g for g in gates if not g.passed]
    if failed:
        raise GateFailed(
            f"deploy of {name} v{version.version} to {env.name} refused: "
            + "; ".join(f"gate {g.name}: {g.detail}" for g in failed)
        )
    if approval is not None and approval.source != "mlops-ci approve":
        registry.set_version_tags(name, version.version, approval.tags(env.name))
    base: dict[str, Any] = {
        "name": name,
        "version": version.version,
        "env": env.name,
        "target": env.target,
        "previous": previous.version if previous else None,
        "gates": gates,
        "approval": approval,
        "by": by,
        "at": now_iso(),
    }
    try:
        target = target_for(config, env, registry, environ, targets)
    except TargetUnavailable as err:
        result = DeployResult(
            **base, status="skipped", split={}, steps=[], note=redact_text(str(err))
        )
        record(config, registry, result, previous)
        return result
    journal = Journal(config.root, env.name)
    journal.begin(
        name=name,
        version=version.version,
        env=env.name,
        target=env.target,
        previous=base["previous"],
        back_to=None,
        by=by,
        plan=list(env.rollout.steps),
    )
    if not target.routed:
        journal.update(phase="applying")
        result = _manifests(env, version, previous, base, target, dry_run)
        return _close(config, registry, journal, result, previous)
    run = _Rollout(config, env, version.version, base, target, journal, progress)
    with interruptible() as signals:
        try:
            result = apply_shadow(config, registry, env, target, _rollout(run))
            signals.hold()  # in the try: a signal before it is one during the rollout
        except Exception as err:
            # a signal's Interrupted, or what it became in a library that caught it
            stop = err if isinstance(err, Interrupted) else signals.interrupted()
            if stop is None:
                _failed(run, err)
                raise
            with signals.deferred():
                _interrupted(registry, run, stop, previous)
            raise stop from None
        try:
            _close(config, registry, journal, result, previous)
        finally:
            signals.release()
        signals.raise_pending(
            f"deploy of {name} v{version.version} to {env.name}: a signal came while its "
            f"outcome ({result.status}) was recorded; recorded in full, then stopped"
        )
    return result


def _close(
    config: Config,
    registry: ModelRegistry,
    journal: Journal,
    result: DeployResult,
    previous: VersionRecord | None,
) -> DeployResult:
    """The outcome: the records first, then the journal closed (a kill between the two
    leaves a journal the next verb settles from what the endpoint serves)."""
    journal.update(phase="recording", outcome=result.status, split=result.split)
    record(config, registry, result, previous)
    journal.close(result.status)
    return result


def _failed(run: _Rollout, err: Exception) -> None:
    """An error ended the rollout (a version that never became ready, an endpoint that would
    not answer): this deploy is alive, so it puts back what it touched — the version it started
    from alone at 100 %, the new one unloaded (the endpoint stopped if nothing served before) —
    and closes its journal ``failed``; the error is then raised. Only a split it cannot put
    back is left running in the journal, with the error, for the next verb to settle."""
    journal = run.journal
    error = redact_text(str(err)).splitlines()[0][:300] if str(err) else type(err).__name__
    phase = journal.data.get("phase")
    if phase == PLANNING:
        journal.close("failed", error=error)
        return
    back_to = journal.data.get("back_to")
    journal.update(phase="reverting", error=error)
    try:
        split = revert(run.target, run.new, back_to)
    except (ServiceError, OSError) as again:
        journal.update(revert_error=redact_text(str(again)).splitlines()[0][:300])
        return
    journal.close("failed", split=split, resolved="reverted", failed_in=phase)


def _interrupted(
    registry: ModelRegistry, run: _Rollout, stop: Interrupted, previous: VersionRecord | None
) -> None:
    """SIGTERM or SIGINT during the rollout: the version the rollout started from back at
    100 % (the endpoint stopped if there was none), recorded as a rollback; ``stop``'s
    message says what was done. A split that cannot be put back is left to the next verb,
    which settles the journal."""
    journal, new, env = run.journal, run.new, run.env.name
    back_to, phase = journal.data.get("back_to"), journal.data.get("phase")
    journal.update(phase="reverting", interrupted=stop.signal)
    try:
        if phase == PLANNING:  # nothing was touched yet: nothing to put back
            running = run.target.running()
            split = run.target.traffic()["weights"] if running else {}
        else:
            run.progress(f"{stop.signal}: putting v{back_to or '-'} back at 100 %")
            split = revert(run.target, new, back_to)
    except (ServiceError, OSError) as err:
        why = redact_text(str(err)).splitlines()[0][:200]
        stop.args = (
            f"deploy of v{new} to {env} stopped by {stop.signal}; its split could not be put "
            f"back ({why}): the next deploy, status or rollback settles it",
        )
        return
    back = f"v{back_to} back at 100 %" if back_to else "the endpoint stopped"
    note = f"stopped by {stop.signal} during the rollout ({phase}): {back}"
    if phase == PLANNING:
        note = f"stopped by {stop.signal} before any traffic moved"
    result = run.result("rolled_back", split, note=note, interrupted=stop.signal)
    _close(run.config, registry, journal, result, previous)
    stop.args = (f"deploy of v{new} to {env} {note}",)


def environment(config: Config, env_name: str) -> DeployEnv:
    env = config.deploy.get(env_name)
    if env is None:
        known = ", ".join(config.deploy) or "none"
        raise InputError(f"mlops.yaml: deploy.{env_name}: no such environment (known: {known})")
    return env


# --- the targets that route by weight: local, docker -----------------------------------


@dataclass
class _Rollout:
    """One rollout on a routed endpoint: what it deploys, where, and what it judged so far."""

    config: Config
    env: DeployEnv
    new: str
    base: dict[str, Any]
    target: RoutedTarget
    journal: Journal
    progress: Progress
    steps: list[StepRecord] = field(default_factory=list)
    rows: list[Any] = field(default_factory=list)

    def result(self, status: str, split: dict[str, float], **more: Any) -> DeployResult:
        return DeployResult(
            **self.base, status=status, split=split, steps=self.steps, url=self.target.url, **more
        )

    def judge(self, current: str | None, percent: float, split: dict[str, float]) -> bool:
        """One step, journaled before the split moves and after it was judged."""
        self.journal.update(phase="moving", step=percent, split=split)
        step = judge_step(
            self.target, self.env, self.new, current, percent, split, self.rows, self.progress
        )
        self.steps.append(step)
        self.journal.update(phase="judged", judged=[[s.percent, s.passed] for s in self.steps])
        return step.passed


def _rollout(run: _Rollout) -> DeployResult:
    """Start the endpoint with the new version alone, or load it beside the version serving
    now and move the split through the rollout steps, judging each; the same for every target
    that routes by weight (the local process, the docker front). An endpoint that dies during
    the rollout is restarted with the version it served before, and the deploy rolled back."""
    env, new, target, journal, progress = run.env, run.new, run.target, run.journal, run.progress
    # the probe rows, of the package's columns: it is fetched (and checked) before traffic moves
    run.rows = probe_rows(run.config, env.rollout.probe_requests, target.columns(new))
    if not target.running():
        progress(f"starting the {env.target} endpoint of {env.name} on {target.url} with v{new}")
        journal.update(phase="starting", split={new: 100.0})
        target.start(new)
        return _first(run)
    traffic = target.traffic()
    weights = traffic["weights"]
    if [v for v, w in weights.items() if w > 0] == [new]:
        return _at_full(run, weights)
    others = [v for v in weights if v != new and weights[v] > 0]
    if not others:  # an endpoint that serves nothing now: the new version alone
        progress(f"{target.url} serves no version now: loading v{new} alone")
        journal.update(phase="loading", split={new: 100.0})
        target.load(new)
        return _first(run)
    current = max(others, key=lambda v: weights[v])
    progress(f"loading v{new} next to v{current} at 0 %")
    journal.update(phase="loading", back_to=current, split=weights)
    plan = env.rollout.steps[:1] if env.rollout.mode == "ab" else env.rollout.steps
    try:
        target.load(new)
        for percent in plan:
            if not run.judge(current, percent, {current: 100.0 - percent, new: percent}):
                progress(f"step {percent:g} % unhealthy: rolling back to v{current} at 100 %")
                journal.update(phase="reverting", split={current: 100.0})
                target.set_split({current: 100.0})
                target.unload(new)
                return run.result("rolled_back", {current: 100.0})
    except (ServiceError, OSError) as err:
        why = died(target, err)
        progress(
            f"the {env.target} endpoint died during the rollout ({why}): restarting v{current}"
        )
        journal.update(phase="restarting", split={current: 100.0})
        target.start(current)
        return run.result(
            "rolled_back",
            {current: 100.0},
            note=f"the serving process died during the rollout ({why}); v{current} restarted alone",
        )
    if env.rollout.mode == "ab":
        return run.result("ab", run.steps[-1].weights, note="A/B split held; alias unchanged")
    for stale in set(traffic["versions"]) - {current, new}:
        target.unload(stale)  # keep only the previous version, at 0 %, for a quick rollback
    return run.result("serving", {current: 0.0, new: 100.0}, alias=env.alias)


def _at_full(run: _Rollout, weights: dict[str, float]) -> DeployResult:
    """The version already takes all traffic: unchanged if the alias names it too; else
    (a deploy killed in its 100 % window) judged at 100 % to finish it, or put back."""
    aliased = run.base["previous"]
    if aliased == run.new:
        return run.result("unchanged", weights, note=f"v{run.new} already takes all traffic")
    run.progress(
        f"v{run.new} takes all traffic but alias '{run.env.alias}' names v{aliased or '-'}: "
        f"judging v{run.new} at 100 % to finish its deploy"
    )
    run.journal.update(phase="moving", step=100.0, back_to=aliased, split=weights)
    done = finish_at_full(run.config, run.env, run.target, run.new, aliased, run.progress)
    run.steps.extend(done.steps)
    if done.status == "serving":
        note = f"finished: v{run.new} took all traffic while alias '{run.env.alias}' did not"
        return run.result("serving", done.split, alias=run.env.alias, note=note)
    return run.result("rolled_back", done.split, note=f"v{run.new} was unhealthy at 100 %")


def _first(run: _Rollout) -> DeployResult:
    """Judge a version that takes all traffic from the start; stop the endpoint if unhealthy
    (or if it died while judged)."""
    try:
        passed = run.judge(None, 100.0, {run.new: 100.0})
    except (ServiceError, OSError) as err:
        why = died(run.target, err)
        run.journal.update(phase="reverting", split={})
        run.target.stop()
        note = f"the serving process died while the first version was judged ({why})"
        return run.result("rolled_back", {}, note=note)
    if not passed:
        run.journal.update(phase="reverting", split={})
        run.target.stop()
        return run.result("rolled_back", {}, note="the first version was unhealthy; stopped")
    return run.result("serving", {run.new: 100.0}, alias=run.env.alias)


# --- the targets that render manifests: kubernetes ----------------------------------------


def _manifests(
    env: DeployEnv,
    version: VersionRecord,
    previous: VersionRecord | None,
    base: dict[str, Any],
    target: ManifestTarget,
    dry_run: bool,
) -> DeployResult:
    """The manifests of the rollout's first split, applied or written; the alias moves only
    when the version was applied alone."""
    done = target.deploy(version, previous, dry_run)
    return DeployResult(
        **base,
        status=done.status,
        split=done.split,
        steps=[],
        manifests=str(done.manifests),
        plan=done.plan,
        note=done.note,
        alias=env.alias if done.complete else None,
    )
