"""deploy: a packaged version into an environment, through its gates, by a controlled rollout.

Gates first (a passed comparison; an approval where required), then the target. ``local`` (the
environment's `mlops-ci serve` process) and ``docker`` (each version its own container behind
the environment's `mlops-ci front`) load the version beside the current one at 0 % and move the
split through ``rollout.steps``, judging each step from the endpoint's own metrics (5xx rate,
p99 against the current version) over a window and rolling back to the previous split at the
first unhealthy step; the environment's alias moves only once 100 % is healthy. ``kubernetes``
renders the manifests for the first step's split and applies or writes them. Every attempt is
recorded on the version (tags and a JSON artifact) and in ``.mlops/deploy.json``.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from mlops_ci.config.types import Config, DeployEnv
from mlops_ci.credentials import redact_text
from mlops_ci.errors import GateFailed, InputError, ServiceError
from mlops_ci.records import JobFolder, append_line, write_json_atomic
from mlops_ci.registry import ModelRegistry, VersionRecord, resolve_version
from mlops_ci.steps.gates import Approval, Gate, check_gates, now_iso
from mlops_ci.targets import TARGETS, Targets, rollout, target_for
from mlops_ci.targets.base import ManifestTarget, RoutedTarget, TargetUnavailable

Progress = Callable[[str], None]
SERVING_STATES = ("serving", "ab")


@dataclass(frozen=True)
class StepRecord:
    percent: float
    weights: dict[str, float]
    passed: bool
    judged: bool
    reasons: tuple[str, ...]
    new: rollout.VersionWindow
    current: rollout.VersionWindow | None


@dataclass(frozen=True)
class DeployResult:
    name: str
    version: str
    env: str
    target: str
    status: str  # serving | ab | rolled_back | unchanged | written | applied | skipped
    previous: str | None
    split: dict[str, float]
    steps: list[StepRecord]
    gates: list[Gate]
    approval: Approval | None
    by: str
    at: str
    url: str | None = None
    alias: str | None = None  # the alias moved to the version, when it was
    note: str | None = None
    manifests: str | None = None
    plan: list[str] = field(default_factory=list)


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
    name = config.model.name
    version = resolve_version(registry, name, version_ref)
    if version.tags.get("mlops.package.complete") != "true":
        raise InputError(
            f"{name} v{version.version} is not packaged",
            hint=f"run `mlops-ci package --version {version.version}` first",
        )
    gates, approval = check_gates(version, env, environ)
    failed = [g for g in gates if not g.passed]
    if failed:
        raise GateFailed(
            f"deploy of {name} v{version.version} to {env.name} refused: "
            + "; ".join(f"gate {g.name}: {g.detail}" for g in failed)
        )
    if approval is not None and approval.source != "mlops-ci approve":
        registry.set_version_tags(name, version.version, approval.tags(env.name))
    previous = registry.get_version_by_alias(name, env.alias)
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
    else:
        if target.routed:
            result = _rollout(config, env, version.version, base, progress, target)
        else:
            result = _manifests(env, version, previous, base, target, dry_run)
    _record(config, registry, result, previous)
    return result


def environment(config: Config, env_name: str) -> DeployEnv:
    env = config.deploy.get(env_name)
    if env is None:
        known = ", ".join(config.deploy) or "none"
        raise InputError(f"mlops.yaml: deploy.{env_name}: no such environment (known: {known})")
    return env


# --- the targets that route by weight: local, docker -----------------------------------


def _rollout(
    config: Config,
    env: DeployEnv,
    new: str,
    base: dict[str, Any],
    progress: Progress,
    target: RoutedTarget,
) -> DeployResult:
    """Start the endpoint with ``new`` alone, or load it beside the version serving now and
    move the split through the rollout steps, judging each; the same for every target that
    routes by weight (the local process, the docker front). An endpoint that dies during the
    rollout is restarted with the version it served before, and the deploy is rolled back."""
    rows = _probe_rows(config, env.rollout.probe_requests, target.columns(new))
    if not target.running():
        progress(f"starting the {env.target} endpoint of {env.name} on {target.url} with v{new}")
        target.start(new)
        return _first(env, new, base, progress, target, rows)

    traffic = target.traffic()
    weights = traffic["weights"]
    if weights.get(new, 0) > 0 and len([w for w in weights.values() if w > 0]) == 1:
        return DeployResult(
            **base,
            status="unchanged",
            split=weights,
            steps=[],
            url=target.url,
            note=f"v{new} already takes all traffic",
        )
    others = [v for v in weights if v != new and weights[v] > 0]
    if not others:  # an endpoint that serves nothing now: the new version alone
        progress(f"{target.url} serves no version now: loading v{new} alone")
        target.load(new)
        return _first(env, new, base, progress, target, rows)
    current = max(others, key=lambda v: weights[v])
    progress(f"loading v{new} next to v{current} at 0 %")
    steps: list[StepRecord] = []
    plan = env.rollout.steps[:1] if env.rollout.mode == "ab" else env.rollout.steps
    try:
        target.load(new)
        for percent in plan:
            split = {current: 100.0 - percent, new: percent}
            step = _judge_step(target, env, new, current, percent, split, rows, progress)
            steps.append(step)
            if not step.passed:
                progress(f"step {percent:g} % unhealthy: rolling back to v{current} at 100 %")
                target.set_split({current: 100.0})
                target.unload(new)
                return DeployResult(
                    **base,
                    status="rolled_back",
                    split={current: 100.0},
                    steps=steps,
                    url=target.url,
                )
    except (ServiceError, OSError) as err:
        why = _died(target, err)
        progress(
            f"the {env.target} endpoint died during the rollout ({why}): restarting v{current}"
        )
        target.start(current)
        return DeployResult(
            **base,
            status="rolled_back",
            split={current: 100.0},
            steps=steps,
            url=target.url,
            note=f"the serving process died during the rollout ({why}); v{current} restarted alone",
        )
    if env.rollout.mode == "ab":
        return DeployResult(
            **base,
            status="ab",
            split=steps[-1].weights,
            steps=steps,
            url=target.url,
            note="A/B split held; alias unchanged",
        )
    for stale in set(traffic["versions"]) - {current, new}:
        target.unload(stale)  # keep only the previous version, at 0 %, for a quick rollback
    return DeployResult(
        **base,
        status="serving",
        split={current: 0.0, new: 100.0},
        steps=steps,
        url=target.url,
        alias=env.alias,
    )


def _died(target: RoutedTarget, err: Exception, grace: float = 3.0) -> str:
    """Why the endpoint stopped answering, when it is dead; a live endpoint that refused a
    call re-raises the error, which says which. A killed process resets its connections
    before it is gone from the process table, so a dying one is given ``grace`` seconds."""
    deadline = time.monotonic() + grace
    while target.running():
        if time.monotonic() >= deadline:
            raise err
        time.sleep(0.05)
    return str(err).splitlines()[0][:200]


def _first(
    env: DeployEnv,
    new: str,
    base: dict[str, Any],
    progress: Progress,
    target: RoutedTarget,
    rows: list[Any],
) -> DeployResult:
    """Judge a version that takes all traffic from the start; stop the endpoint if unhealthy
    (or if it died while judged)."""
    try:
        step = _judge_step(target, env, new, None, 100.0, {new: 100.0}, rows, progress)
    except (ServiceError, OSError) as err:
        why = _died(target, err)
        target.stop()
        return DeployResult(
            **base,
            status="rolled_back",
            split={},
            steps=[],
            url=target.url,
            note=f"the serving process died while the first version was judged ({why})",
        )
    if not step.passed:
        target.stop()
        return DeployResult(
            **base,
            status="rolled_back",
            split={},
            steps=[step],
            url=target.url,
            note="the first version was unhealthy; stopped",
        )
    return DeployResult(
        **base, status="serving", split={new: 100.0}, steps=[step], url=target.url, alias=env.alias
    )


def _judge_step(
    target: RoutedTarget,
    env: DeployEnv,
    new: str,
    current: str | None,
    percent: float,
    split: dict[str, float],
    rows: list[Any],
    progress: Progress,
) -> StepRecord:
    rules = env.rollout
    target.set_split(split)
    progress(
        f"step {percent:g} %: split {_split_text(split)}; judging for {rules.window_seconds:g}s"
    )
    started = time.monotonic()
    before = rollout.parse_metrics(target.metrics_text())
    target.probe(new, rows)
    if current is not None:
        target.probe(current, rows[: max(1, len(rows) // 2)])
    time.sleep(max(0.0, rules.window_seconds - (time.monotonic() - started)))
    after = rollout.parse_metrics(target.metrics_text())
    new_window = rollout.window(new, before, after)
    current_window = rollout.window(current, before, after) if current is not None else None
    health = rollout.judge(new_window, current_window, rules)
    progress(
        f"step {percent:g} %: v{new} {new_window.requests} requests, "
        f"5xx {new_window.error_rate:.1%}, p99 {_ms(new_window.p99_ms)}"
        + (f"; v{current} p99 {_ms(current_window.p99_ms)}" if current_window else "")
        + (" — healthy" if health.passed else f" — unhealthy: {'; '.join(health.reasons)}")
    )
    return StepRecord(
        percent, split, health.passed, health.judged, health.reasons, new_window, current_window
    )


def _probe_rows(config: Config, count: int, columns: tuple[str, ...]) -> list[Any]:
    """``count`` rows of evaluate.data for probe requests: records of the served columns
    (text columns stay text), or plain rows where the package names no columns."""
    from mlops_ci.evaluation.data import load_evaluation

    if count == 0:
        return []
    import pandas as pd

    features = load_evaluation(config).features
    rows: list[Any] = (
        [  # a missing value is JSON's null (pandas' NA has no JSON form)
            {k: None if pd.isna(v) else v for k, v in record.items()}
            for record in features[list(columns)].astype(object).to_dict("records")
        ]
        if columns and set(columns) <= set(features.columns)
        else features.to_numpy(dtype=float).tolist()
    )
    return [rows[i % len(rows)] for i in range(count)]


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


# --- records ----------------------------------------------------------------------------


def _record(
    config: Config, registry: ModelRegistry, result: DeployResult, previous: VersionRecord | None
) -> None:
    """On the version (tags + a JSON artifact on its run), the alias, and .mlops/deploy.json."""
    prefix = f"mlops.deploy.{result.env}."
    registry.set_version_tags(
        result.name,
        result.version,
        {
            prefix + "status": result.status,
            prefix + "target": result.target,
            prefix + "split": _split_text(result.split),
            prefix + "by": result.by,
            prefix + "at": result.at,
            prefix + "url": result.url or result.manifests or "",
            prefix + "previous": result.previous or "",
        },
    )
    if result.alias:
        registry.set_alias(result.name, result.alias, result.version)
        if previous is not None and previous.version != result.version:
            registry.set_version_tags(
                result.name,
                previous.version,
                {prefix + "status": "replaced", prefix + "at": result.at},
            )
    record = asdict(result)
    run_id = registry.get_version(result.name, result.version).run_id
    if run_id:
        with tempfile.TemporaryDirectory() as tmp:
            stamp = result.at.replace(":", "").replace("-", "")
            (Path(tmp) / f"{result.env}-{stamp}.json").write_text(json.dumps(record, indent=2))
            registry.log_artifacts(run_id, Path(tmp), "deployments")
    job = JobFolder(config.root)
    write_json_atomic(job.deploy, record)
    append_line(job.deploy_audit, record)


def _split_text(split: Mapping[str, float]) -> str:
    return ", ".join(f"v{v} {w:g}%" for v, w in split.items()) or "none"


def _ms(value: float | None) -> str:
    return "n/a" if value is None else f"≤{value:g} ms"
