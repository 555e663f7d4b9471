"""Run a pipeline's stages in order; a stage whose cache key is known is skipped and its outs
restored, from ``.mlops/cache`` or, on an empty disk, from the MLflow run that holds them.

A stage's key is the sha256 of its command (and how it runs), the content of its deps (files
and folders: the sha256 of each file, never an mtime), the values of its params, its outs'
paths and the environment lock. The deps that are another stage's outs are taken from that
stage's manifest, so a dry run can say what runs without restoring anything.
"""

from __future__ import annotations

import hashlib
import json
import re
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

from mlops_ci.config.types import Config, Scalar, line_of
from mlops_ci.errors import ConfigError, InputError, TrainingError
from mlops_ci.pipeline.cache import Manifest, StageCache, manifest_of, remove
from mlops_ci.pipeline.dvcfile import read_dvc
from mlops_ci.pipeline.spec import (
    Pipeline,
    Stage,
    check,
    covers,
    from_mlops,
    normalised,
    overlaps,
    param_value,
)
from mlops_ci.provenance import sha256_file
from mlops_ci.records import JobFolder

RAN, CACHED, WOULD_RUN = "ran", "cached", "would run"
_SHA256 = re.compile(r"[0-9a-f]{64}")
_SHOWN = 3  # changed files named in a reason, then "and N more"


@dataclass(frozen=True)
class StageRun:
    """One stage of one train: what it read, what it wrote, whether it ran and why."""

    name: str
    key: str  # "" in a dry run behind a stage that would run (its deps are not known yet)
    state: str  # RAN | CACHED | WOULD_RUN
    why: str
    seconds: float
    command: str
    upstream: tuple[str, ...]
    deps: Manifest = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    outs: Manifest = field(default_factory=dict)
    holder: str | None = None  # the MLflow run whose artifacts hold the outs (None: not yet)

    def digest(self, manifest: Manifest) -> str:
        return hashlib.sha256(json.dumps(manifest, sort_keys=True).encode()).hexdigest()


class Remote(Protocol):
    """Where stage outs live beyond this disk: the MLflow runs that uploaded them."""

    def find(self, stage: str, key: str) -> str | None: ...
    def record(self, run_id: str, stage: str) -> dict[str, Any] | None: ...
    def fetch(self, run_id: str, stage: str, dest: Path) -> Path: ...


Runner = Callable[[Stage, Path], None]  # run the stage's command, its output to the log file
Notify = Callable[[str], None]


def load_pipeline(config: Config) -> Pipeline | None:
    """The checked pipeline of ``config`` (pipeline.stages or pipeline.dvc), None without one;
    ConfigError lists every problem with its file and line."""
    if not config.pipeline.enabled:
        return None
    if config.pipeline.dvc is None:
        return check(from_mlops(config), config, config.path.name)
    shown = config.pipeline.dvc
    file = config.root / shown
    if not file.is_file():
        line = line_of(config, ["pipeline", "dvc"])
        raise ConfigError(
            [f"{config.path.name}:{line}: pipeline.dvc: '{shown}' does not exist"],
            file=config.path,
        )
    return check(read_dvc(file, shown), config, shown)


def stage_key(stage: Stage, deps: Manifest, params: Mapping[str, Any], environment: str) -> str:
    body = {
        "command": stage.command,
        "shell": stage.shell,
        "wdir": stage.wdir,
        "deps": [stage.deps, deps],
        "params": {k: repr(v) for k, v in sorted(params.items())},
        "outs": [stage.outs, stage.uncached_outs],
        "environment": environment,
    }
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


@dataclass
class _Run:
    """The state of one pass over the stages."""

    config: Config
    pipeline: Pipeline
    params: Mapping[str, Scalar]
    environment: str
    cache: StageCache
    remote: Remote | None
    use_cache: bool
    dry_run: bool
    notify: Notify
    known: Manifest = field(default_factory=dict)  # outs of the stages passed so far
    unknown: set[str] = field(default_factory=set)  # stages that would run (dry run)


def run_stages(
    config: Config,
    pipeline: Pipeline,
    params: Mapping[str, Scalar],
    environment: str,
    runner: Runner,
    remote: Remote | None = None,
    use_cache: bool = True,
    dry_run: bool = False,
    notify: Notify | None = None,
) -> list[StageRun]:
    """Each stage in order: skipped with its outs restored when its key is cached, else run.
    ``dry_run`` runs and restores nothing and says what would run and why."""
    cache = StageCache(JobFolder(config.root).cache)
    state = _Run(
        config, pipeline, params, environment, cache, remote, use_cache, dry_run,
        notify or (lambda _line: None),
    )  # fmt: skip
    return [_stage(state, stage, runner) for stage in pipeline.stages]


def _stage(run: _Run, stage: Stage, runner: Runner) -> StageRun:
    this = StageRun(stage.name, "", WOULD_RUN, "", 0.0, stage.command, stage.upstream)
    blocked = [u for u in stage.upstream if u in run.unknown]
    if blocked:  # a dry run: the deps it reads from those stages are not known yet
        run.unknown.add(stage.name)
        return replace(this, why=f"upstream stage '{blocked[0]}' would run")
    started = time.monotonic()
    roots = [o for u in stage.upstream for o in run.pipeline.stage(u).all_outs]
    deps = _deps(run.config.root, stage.deps, run.known, roots)
    try:
        values = {p: _plain(param_value(run.config, stage, p, run.params)) for p in stage.params}
    except KeyError as err:
        raise InputError(f"stage '{stage.name}': {err.args[0]}") from None
    key = stage_key(stage, deps, values, run.environment)
    this = replace(this, key=key, deps=deps, params=values)
    found, holder, where = _lookup(run, stage, key)
    if found is not None:
        outs: Manifest = found["outs"]
        if run.dry_run:
            run.known.update(outs)
            return replace(this, state=CACHED, why=f"unchanged; outs in {where}", outs=outs)
        if holder is not None and not run.cache.has(outs):
            _fetch(run, stage, holder, outs)
            run.cache.save({**found, "holder": holder})  # known on this disk from now on
        rewritten = run.cache.restore(run.config.root, stage.outs, outs)
        run.known.update(outs)
        why = f"unchanged; outs restored from {where}" if rewritten else "unchanged; outs in place"
        seconds = time.monotonic() - started
        return replace(this, state=CACHED, why=why, seconds=seconds, outs=outs, holder=holder)
    why = _why(run, stage, key, deps, values)
    if run.dry_run:
        run.unknown.add(stage.name)
        return replace(this, why=why)
    run.notify(f"stage {stage.name}: running ({why})")
    outs = _execute(run, stage, runner)
    this = replace(this, state=RAN, why=why, seconds=time.monotonic() - started, outs=outs)
    run.cache.save(record_of(this, stage, run.environment))
    run.known.update(outs)
    return this


def _plain(value: Any) -> Any:
    """A param's value as JSON has it (a YAML date becomes its text), so that the record, the
    key and MLflow's param all hold the same thing."""
    return json.loads(json.dumps(value, default=str))


def record_of(this: StageRun, stage: Stage, environment: str) -> dict[str, Any]:
    """What the cache (and ``stages/NAME/record.json`` in MLflow) keeps of a stage run."""
    return {
        "name": this.name,
        "key": this.key,
        "command": this.command,
        "upstream": list(this.upstream),
        "deps": this.deps,
        "params": this.params,
        "outs": this.outs,
        "uncached_outs": list(stage.uncached_outs),
        "environment": environment,
        "seconds": this.seconds,
        "holder": this.holder,
    }


def _deps(root: Path, deps: tuple[str, ...], known: Manifest, roots: list[str]) -> Manifest:
    """The files of each dep with their sha256: from the manifests of the upstream stages for
    what they write, from the disk for the rest."""
    out: Manifest = {}
    for dep in deps:
        covered = [r for r in roots if overlaps(r, dep)]
        out.update({p: s for p, s in known.items() if covered and covers(dep, p)})
        if not covered or any(covers(dep, r) and r != dep for r in covered):
            disk = manifest_of(root, [dep])
            out.update({p: s for p, s in disk.items() if not any(covers(r, p) for r in covered)})
    return dict(sorted(out.items()))


def _lookup(run: _Run, stage: Stage, key: str) -> tuple[dict[str, Any] | None, str | None, str]:
    """The record of ``key`` whose outs can be had (local cache, else MLflow), its holder run
    and where the outs are; (None, None, "") when the stage must run."""
    if not run.use_cache or stage.always_changed:
        return None, None, ""
    if any(not (run.config.root / o).exists() for o in stage.uncached_outs):
        return None, None, ""  # an uncached out is not restorable: only running makes it
    local = run.cache.record(stage.name, key)
    if local is not None and _fits(stage, local) and run.cache.has(local["outs"]):
        return local, local.get("holder"), ".mlops/cache"
    holder = run.remote.find(stage.name, key) if run.remote is not None else None
    if holder is None:
        return None, None, ""
    record = run.remote.record(holder, stage.name) if run.remote is not None else None
    if record is None or record.get("key") != key or not _fits(stage, record):
        return None, None, ""
    return record, holder, f"MLflow run {holder}"


def _fits(stage: Stage, record: dict[str, Any]) -> bool:
    """A record whose outs are files inside the stage's cached outs, by normalised relative
    paths, with sha256 digests: anything else (``../`` in a record read from a shared
    registry) is never restored."""
    outs = record.get("outs")
    if not isinstance(outs, dict):
        return False
    for rel, sha in outs.items():
        if not isinstance(rel, str) or not isinstance(sha, str) or not _SHA256.fullmatch(sha):
            return False
        if normalised(rel) != rel or not any(covers(o, rel) for o in stage.outs):
            return False
    return True


def _fetch(run: _Run, stage: Stage, holder: str, outs: Manifest) -> None:
    """Download the outs from the MLflow run into the cache, each checked against its sha256."""
    assert run.remote is not None
    run.cache.folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=run.cache.folder) as tmp:
        folder = run.remote.fetch(holder, stage.name, Path(tmp))
        for rel, sha in outs.items():
            file = folder / "outs" / rel
            if not file.is_file() or sha256_file(file) != sha:
                raise InputError(
                    f"MLflow run {holder}: stages/{stage.name}/outs/{rel} is missing or does not "
                    "match its record's sha256; refusing to restore it",
                    hint="rerun with `mlops-ci train --no-cache`",
                )
            run.cache.put(file, sha)


def _execute(run: _Run, stage: Stage, runner: Runner) -> Manifest:
    root = run.config.root
    for out in stage.all_outs:
        if out not in stage.persist:
            remove(root / out)  # a stage never finds the last run's outs
    runner(stage, JobFolder(root).stage_log(stage.name))
    missing = [o for o in stage.all_outs if not (root / o).exists()]
    if missing:
        raise TrainingError(
            f"stage '{stage.name}': the command wrote no '{missing[0]}' (an out of the stage)",
            hint="each out must exist after the stage's command; fix the command or the outs",
        )
    outs = manifest_of(root, stage.outs)
    run.cache.store(root, outs)
    return outs


def _why(run: _Run, stage: Stage, key: str, deps: Manifest, values: dict[str, Any]) -> str:
    """Why the stage runs, against the last record of it on this disk."""
    if not run.use_cache:
        return "the cache is off (--no-cache or train.cache: false)"
    if stage.always_changed:
        return "always_changed"
    missing = [o for o in stage.uncached_outs if not (run.config.root / o).exists()]
    if missing:
        return f"uncached out '{missing[0]}' is missing"
    last = run.cache.last(stage.name)
    if last is None:
        return "no earlier run of it here or in MLflow"
    if last.get("key") == key:
        return "its outs are no longer in the cache"
    reasons = []
    if last.get("command") != stage.command:
        reasons.append("command changed")
    before: Manifest = last.get("deps") or {}
    changed = [f"{p} (modified)" for p in deps if p in before and before[p] != deps[p]]
    changed += [f"{p} (new)" for p in deps if p not in before]
    changed += [f"{p} (deleted)" for p in before if p not in deps]
    if changed:
        more = f" and {len(changed) - _SHOWN} more" if len(changed) > _SHOWN else ""
        reasons.append("deps changed: " + ", ".join(changed[:_SHOWN]) + more)
    old = last.get("params") or {}
    diff = [f"{k} {old.get(k)!r} → {v!r}" for k, v in values.items() if old.get(k) != v]
    if diff:
        reasons.append("params changed: " + ", ".join(diff))
    if last.get("environment") != run.environment:
        reasons.append("environment lock changed")
    return "; ".join(reasons) or "its outs or settings changed"
