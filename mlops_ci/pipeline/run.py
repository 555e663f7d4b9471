"""Run a pipeline's stages in order; a stage whose cache key is known is skipped and its outs
restored, from ``.mlops/cache`` or, on an empty disk, from the MLflow run that holds them.

The lock file (``lock``, ``mlops.lock`` committed with the code) is the trust root: a stage is
restored only when its key is the lock file's, and only with the bytes whose sha256 the lock
file names; a record from the cache folder or MLflow is checked (its stage, its key, its paths)
before anything is written, and a blob that does not match is fetched again or the stage runs.

A stage's key is the sha256 of its command (and how it runs), the content of its deps (files
and folders: the sha256 of each file, never an mtime), the values of its params, its outs'
paths and the environment lock. The deps that are another stage's outs are taken from that
stage's manifest, so a dry run can say what runs without restoring anything.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

from mlops_ci.config.types import Config, Scalar, line_of
from mlops_ci.errors import ConfigError, InputError, TrainingError
from mlops_ci.pipeline.cache import CorruptBlobs, Manifest, StageCache, manifest_of, remove
from mlops_ci.pipeline.dvcfile import read_dvc
from mlops_ci.pipeline.lock import SHA256, Locked, LockFile, lock_path, read_lock
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
    lock: LockFile  # the trust root: read once, written as each stage runs or is restored
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
    """Each stage in order: skipped with its outs restored when its key is the lock file's and
    its outs can be had with the lock file's sha256, else run; the lock file written as each
    stage is done. ``dry_run`` runs, restores and writes nothing and says what would run and
    why."""
    cache = StageCache(JobFolder(config.root).cache)
    state = _Run(
        config, pipeline, params, environment, cache, remote, use_cache, dry_run,
        notify or (lambda _line: None), read_lock(lock_path(config.path)),
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
    entry = _locked(run, stage, key)
    why = ""
    if entry is not None:  # the lock file vouches for its outs: have them, checked, if we can
        found = _cached(run, stage, this, entry)
        if isinstance(found, StageRun):
            run.known.update(found.outs)
            found = replace(found, seconds=time.monotonic() - started)
            _lock(run, stage, found)
            return found
        why = found
    why = why or _why(run, stage, key, deps, values)
    if run.dry_run:
        run.unknown.add(stage.name)
        return replace(this, why=why)
    run.notify(f"stage {stage.name}: running ({why})")
    outs = _execute(run, stage, runner)
    this = replace(this, state=RAN, why=why, seconds=time.monotonic() - started, outs=outs)
    run.cache.save(record_of(this, stage, run.environment))
    run.known.update(outs)
    _lock(run, stage, this)
    return this


def _locked(run: _Run, stage: Stage, key: str) -> Locked | None:
    """The lock file's entry of the stage when it may be restored and the entry has this key;
    an entry with this key naming a file outside the stage's outs is refused."""
    if _uncacheable(run, stage) is not None:
        return None
    entry = run.lock.entry(stage.name, key)
    if entry is None:
        return None
    for rel in entry.outs:
        if not any(covers(o, rel) for o in stage.outs):
            raise InputError(
                f"{run.lock.shown}: stages.{stage.name}.outs: '{rel}' is not inside an out of "
                f"stage '{stage.name}' ({', '.join(stage.outs) or 'none'}); refusing it",
                hint=f"restore {run.lock.shown} from git, or delete it (every stage then runs)",
            )
    return entry


def _lock(run: _Run, stage: Stage, this: StageRun) -> None:
    """Write the stage's entry into the lock file (never in a dry run)."""
    if run.dry_run:
        return
    locked = Locked(this.key, stage.command, run.environment, this.deps, this.params, this.outs)
    run.lock.put(stage.name, locked, [s.name for s in run.pipeline.stages])


def _cached(run: _Run, stage: Stage, this: StageRun, entry: Locked) -> StageRun | str:
    """The stage restored (or, in a dry run, where it would be restored from) with the outs
    the lock file names, each file checked against its sha256 there: from the work tree, from
    ``.mlops/cache``, else from the MLflow run tagged with its key. Why it must run instead
    when none of them holds exactly those bytes."""
    root, outs, lock = run.config.root, entry.outs, run.lock.shown
    local = _local_record(run, stage, this.key)
    holder = local.get("holder") if local is not None else None
    cached = replace(this, state=CACHED, outs=outs, holder=holder)
    note = ""
    if run.dry_run and run.cache.has(outs):
        bad = run.cache.corrupt(outs)
        if not bad:
            return replace(cached, why="unchanged; outs in .mlops/cache")
        note = _corrupt(bad, lock)
    if manifest_of(root, stage.outs) == outs and all((root / o).exists() for o in stage.outs):
        if not run.dry_run:
            replaced = run.cache.store(root, outs, check=holder is None)  # uploaded if None
            if replaced:
                said = f"{_corrupt(replaced, lock)}: replaced from the work tree, which matches it"
                run.notify(f"stage {stage.name}: {said}")
            if local is None:
                run.cache.save(record_of(cached, stage, run.environment))
        return replace(cached, why="unchanged; outs in place")
    if not run.dry_run and run.cache.has(outs):
        try:
            run.cache.restore(root, stage.outs, outs)
            return replace(cached, why="unchanged; outs restored from .mlops/cache")
        except CorruptBlobs as err:
            note = _corrupt(err.paths, lock)
    holder = run.remote.find(stage.name, this.key) if run.remote is not None else None
    if holder is None:
        held = "no MLflow run holds them" if note else "neither .mlops/cache nor MLflow holds them"
        return _and(note, f"{lock} names its outs, but {held}")
    assert run.remote is not None
    record = run.remote.record(holder, stage.name)
    shown = f"MLflow run {holder}: stages/{stage.name}/record.json"
    if record is None:
        return _and(note, f"MLflow run {holder} has no stages/{stage.name}/record.json")
    check_record(run.pipeline, stage, this.key, record, shown)
    if record["outs"] != outs:
        return _and(note, f"MLflow run {holder} holds other outs than {lock} names")
    again = f" (re-fetched: {note})" if note else ""
    if run.dry_run:
        return replace(cached, why=f"unchanged; outs in MLflow run {holder}{again}", holder=holder)
    wrong = _fetch(run, stage, holder, outs)
    if wrong is not None:
        artifact = f"stages/{stage.name}/outs/{wrong}"
        return _and(note, f"MLflow run {holder}: {artifact} does not match its sha256 in {lock}")
    if note:
        run.notify(f"stage {stage.name}: {note}; re-fetched from MLflow run {holder}")
    cached = replace(cached, holder=holder)
    run.cache.save(record_of(cached, stage, run.environment))  # known on this disk from now on
    run.cache.restore(root, stage.outs, outs)
    return replace(cached, why=f"unchanged; outs restored from MLflow run {holder}{again}")


def _corrupt(paths: list[str], lock: str) -> str:
    more = f" and {len(paths) - 1} more" if len(paths) > 1 else ""
    return f"{paths[0]}{more} in .mlops/cache did not match its sha256 in {lock}"


def _and(note: str, why: str) -> str:
    return f"{note}; {why}" if note else why


def _local_record(run: _Run, stage: Stage, key: str) -> dict[str, Any] | None:
    """This disk's record of the stage run with ``key`` (its holder), checked as one from
    MLflow is: the cache folder may have come from elsewhere (a CI cache)."""
    record = run.cache.record(stage.name, key)
    if record is not None:
        shown = str(run.cache.record_path(stage.name, key).relative_to(run.config.root))
        check_record(run.pipeline, stage, key, record, shown)
        if not isinstance(record.get("holder"), (str, type(None))):
            raise InputError(f"{shown}: holder is not a run id; refusing it", hint=_LOCAL_HINT)
    return record


_LOCAL_HINT = "delete .mlops/cache (this disk's copy: what it lacks is fetched again or rerun)"
_REMOTE_HINT = (
    "mlops-ci train did not write that record: delete the run, or its tag mlops.stage.NAME.outs"
)


def check_record(
    pipeline: Pipeline, stage: Stage, key: str, record: dict[str, Any], shown: str
) -> None:
    """A stage record (``.mlops/cache`` or MLflow) must name this stage and its key, and only
    out files inside the stage's declared outs by relative, normalised paths with sha256
    digests; anything else is refused with one line naming it, before anything is written."""
    hint = _REMOTE_HINT if shown.startswith("MLflow") else _LOCAL_HINT
    name, outs = record.get("name"), record.get("outs")
    if name != stage.name:
        what = (
            f"stage '{name}'"
            if any(s.name == name for s in pipeline.stages)
            else f"{str(name)[:100]!r}, a stage {pipeline.source} does not define"
        )
        raise InputError(f"{shown}: names {what}, not '{stage.name}'; refusing it", hint=hint)
    if record.get("key") != key:
        raise InputError(f"{shown}: its key is not the stage's key {key}; refusing it", hint=hint)
    if not isinstance(outs, dict):
        raise InputError(f"{shown}: has no outs {{path: sha256}}; refusing it", hint=hint)
    for rel, sha in outs.items():
        if not isinstance(rel, str) or normalised(rel) != rel:
            raise InputError(
                f"{shown}: out {str(rel)[:200]!r} is not a relative, normalised path inside the "
                "project; refusing it",
                hint=hint,
            )
        if not any(covers(o, rel) for o in stage.outs):
            raise InputError(
                f"{shown}: out '{rel}' is not inside an out of stage '{stage.name}' "
                f"({', '.join(stage.outs) or 'none'}); refusing it",
                hint=hint,
            )
        if not isinstance(sha, str) or not SHA256.fullmatch(sha):
            raise InputError(f"{shown}: out '{rel}' has no sha256; refusing it", hint=hint)


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


def _fetch(run: _Run, stage: Stage, holder: str, outs: Manifest) -> str | None:
    """Download the outs from the MLflow run and put them in the cache, each only when its
    sha256 is the lock file's; the first path that is missing or differs (nothing put)."""
    assert run.remote is not None
    run.cache.folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=run.cache.folder) as tmp:
        folder = run.remote.fetch(holder, stage.name, Path(tmp))
        for rel, sha in outs.items():
            file = folder / "outs" / rel
            if not file.is_file() or sha256_file(file) != sha:
                return rel
        for rel, sha in outs.items():
            run.cache.put(folder / "outs" / rel, sha)
    return None


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
    run.cache.store(root, outs, check=True)  # a blob edited in the cache is replaced
    return outs


def _uncacheable(run: _Run, stage: Stage) -> str | None:
    """Why the stage runs whatever its key: the cache is off, always_changed, an uncached out
    is missing (only running makes it)."""
    if not run.use_cache:
        return "the cache is off (--no-cache or train.cache: false)"
    if stage.always_changed:
        return "always_changed"
    missing = [o for o in stage.uncached_outs if not (run.config.root / o).exists()]
    if missing:
        return f"uncached out '{missing[0]}' is missing"
    return None


def _why(run: _Run, stage: Stage, key: str, deps: Manifest, values: dict[str, Any]) -> str:
    """Why the stage runs: against its entry in the lock file, else the last record of it on
    this disk."""
    reason = _uncacheable(run, stage)
    if reason is not None:
        return reason
    locked = run.lock.stages.get(stage.name)
    last = dataclasses.asdict(locked) if locked is not None else run.cache.last(stage.name)
    if last is None or last.get("key") == key:
        held = _held(run, stage, key)
        if held is not None:
            return f"{run.lock.shown} has no entry for it: the outs in {held} are not taken"
        if last is None:
            return "no earlier run of it here or in MLflow"
        return f"{run.lock.shown} has no entry for it"
    reasons = []
    if last.get("command") != stage.command:
        reasons.append("command changed")
    before: Manifest = last["deps"] if isinstance(last.get("deps"), dict) else {}
    changed = [f"{p} (modified)" for p in deps if p in before and before[p] != deps[p]]
    changed += [f"{p} (new)" for p in deps if p not in before]
    changed += [f"{p} (deleted)" for p in before if p not in deps]
    if changed:
        more = f" and {len(changed) - _SHOWN} more" if len(changed) > _SHOWN else ""
        reasons.append("deps changed: " + ", ".join(changed[:_SHOWN]) + more)
    old: dict[str, Any] = last["params"] if isinstance(last.get("params"), dict) else {}
    diff = [f"{k} {old.get(k)!r} → {v!r}" for k, v in values.items() if old.get(k) != v]
    if diff:
        reasons.append("params changed: " + ", ".join(diff))
    if last.get("environment") != run.environment:
        reasons.append("environment lock changed")
    return "; ".join(reasons) or "its outs or settings changed"


def _held(run: _Run, stage: Stage, key: str) -> str | None:
    """Where outs of the key are that the lock file does not vouch for (said, never taken)."""
    if run.cache.record_path(stage.name, key).is_file():
        return ".mlops/cache"
    holder = run.remote.find(stage.name, key) if run.remote is not None else None
    return f"MLflow run {holder}" if holder is not None else None
