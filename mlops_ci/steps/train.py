"""train: run the user's training command, or reuse an identical earlier run (the step cache).

The cache key covers everything that decides the result: the command, the params, a sha256
manifest of the declared inputs (code and data), the environment lock and the output layout.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import functools
import hashlib
import json
import math
import os
import shutil
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mlops_ci import provenance
from mlops_ci.config.types import Config, Scalar
from mlops_ci.errors import InputError, TrainingError
from mlops_ci.evaluation import predictions
from mlops_ci.evaluation.data import load_evaluation
from mlops_ci.evaluation.importance import settings_for
from mlops_ci.pipeline.cache import StageCache
from mlops_ci.pipeline.records import (
    STAGES_ARTIFACT,
    pipeline_key,
    stage_artifacts,
    stage_params,
    stage_summary,
)
from mlops_ci.pipeline.run import RAN, StageRun, load_pipeline, run_stages
from mlops_ci.pipeline.spec import Pipeline, Stage
from mlops_ci.pipeline.usercommand import run_command
from mlops_ci.records import FINISHED, JobFolder, write_json_atomic
from mlops_ci.registry import TAG_CACHE_KEY, TAG_ISOLATION, ModelRegistry, NewRun, RunRecord
from mlops_ci.sandbox import isolation_for
from mlops_ci.steps.journal import TrainJournal


@dataclass(frozen=True)
class TrainResult:
    run_id: str
    cached: bool
    cache_key: str
    params: dict[str, str]
    metrics: dict[str, float]
    model_uri: str | None
    data_fingerprint: str
    duration_s: float
    tags: dict[str, str] = field(default_factory=dict)
    # seconds of each part of a train that ran: the command, scoring evaluate.data, the
    # permutation importance, logging to MLflow (the rest)
    timings: dict[str, float] = field(default_factory=dict)
    importance_note: str = ""  # what the importance budget lowered, when it did
    stages: list[StageRun] = field(default_factory=list)  # pipeline.stages: each one's story


def parse_overrides(pairs: tuple[str, ...]) -> dict[str, Scalar]:
    """``--param K=V`` values, typed as YAML scalars (``0.1`` is a float, ``true`` a bool)."""
    out: dict[str, Scalar] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            raise InputError(f"--param '{pair}': expected KEY=VALUE, for example --param C=0.5")
        value = yaml.safe_load(raw) if raw else ""
        if not isinstance(value, (str, int, float, bool)):
            value = raw
        out[key.strip()] = value
    return out


def check_overrides(config: Config, overrides: Mapping[str, Scalar]) -> None:
    """``--param`` names must be declared in train.params: a typo would train with the default
    and log a param nobody reads."""
    declared = list(config.train.params)
    for key in overrides:
        if key in declared:
            continue
        same_case = [d for d in declared if d.lower() == key.lower()]
        close = same_case or difflib.get_close_matches(key, declared, n=1)
        guess = f"; did you mean '{close[0]}'?" if close else ""
        raise InputError(
            f"--param {key}: not declared in mlops.yaml train.params "
            f"({', '.join(declared) or 'none declared'}){guess}",
            hint=f"declare it with its default under train.params, e.g. params: {{{key}: ...}}",
        )


def cache_key(config: Config, params: Mapping[str, Scalar], trace: provenance.Lineage) -> str:
    body = {
        "command": config.train.command,
        "params": {k: str(v) for k, v in sorted(params.items())},
        "inputs": trace.inputs.sha256,
        "environment": trace.environment_sha256,
        "flavor": config.model.flavor,
        "outputs": [config.train.model_output, config.train.metrics_output],
    }
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def train(
    config: Config,
    registry: ModelRegistry,
    overrides: Mapping[str, Scalar] | None = None,
    use_cache: bool = True,
    env: Mapping[str, str] | None = None,
    progress: Callable[[str, int, int], None] | None = None,
    notify: Callable[[str], None] | None = None,
) -> TrainResult:
    """Train (or reuse a cached run) and record it in MLflow with its lineage.

    .mlops/train.json is its journal (``steps.journal``): running before anything runs, then
    finished, failed or killed, so that compare and register never act on the run of an
    earlier train. ``progress`` hears (what, done, in all) of the permutation importance;
    ``notify`` a line as each pipeline stage starts to run, and what this train settled of a
    dead train before it.
    """
    with TrainJournal(config, registry, env, notify) as journal:
        try:
            return _train(config, registry, overrides, use_cache, env, progress, notify, journal)
        except BaseException as err:
            journal.failed(err)
            raise


def _train(
    config: Config,
    registry: ModelRegistry,
    overrides: Mapping[str, Scalar] | None,
    use_cache: bool,
    env: Mapping[str, str] | None,
    progress: Callable[[str, int, int], None] | None,
    notify: Callable[[str], None] | None,
    journal: TrainJournal,
) -> TrainResult:
    env = dict(os.environ if env is None else env)
    started = time.monotonic()
    check_overrides(config, overrides or {})
    params: dict[str, Scalar] = {**config.train.params, **(overrides or {})}
    pipeline = load_pipeline(config)
    use_cache = use_cache and config.train.cache
    trace = provenance.collect(config.root, _inputs(config, pipeline), env)
    stages: list[StageRun] = []
    if pipeline is None:
        key = cache_key(config, params, trace)
    else:
        remote = RegistryStages(registry, config.registry.experiment)
        runner = functools.partial(_run_stage, config, params, env)
        stages = run_stages(
            config, pipeline, params, trace.environment_sha256, runner, remote, use_cache,
            notify=notify,
        )  # fmt: skip
        key = pipeline_key(config, stages)

    if use_cache:
        hit = registry.find_cached_run(config.registry.experiment, key)
        if hit is not None:
            return finish(config, hit, True, key, trace, started, stages, journal)

    work = JobFolder(config.root).train_work
    model_file = config.resolve(config.train.model_output)
    metrics_file = config.resolve(config.train.metrics_output)
    for output, stale in (("model", model_file), ("metrics", metrics_file)):
        if stale.is_dir() and not (output == "model" and config.model.flavor == "pyfunc"):
            raise InputError(
                f"mlops.yaml: train.outputs.{output}: '{stale}' is a folder; name the file the "
                "training command writes (a folder is model.flavor: pyfunc's)"
            )
    if not config.train.command and pipeline is None:
        raise InputError(
            "mlops.yaml: train.command: nothing to run (no train.command, no pipeline)",
            hint="give train.command, or hand a model over: `mlops-ci train --model PATH`",
        )
    timings: dict[str, float] = {}
    written = {model_file: True, metrics_file: True}  # stages: their own records say
    tags = {**trace.tags(), TAG_CACHE_KEY: key, "mlops.model.name": config.model.name}
    if pipeline is None:
        journal.start_run(tags)  # RUNNING while the command runs: a kill ends it KILLED
        command_started = time.monotonic()
        with _set_aside(work / "previous", (model_file, metrics_file)):
            log = run_command(config, config.train.command, params, env, work / "train.log")
            written = {path: _written(path) for path in written}
        timings["command"] = time.monotonic() - command_started
    else:
        log = JobFolder(config.root).stage_log(pipeline.training)
        timings.update({f"stage {s.name}": s.seconds for s in stages if s.state == RAN})
    metrics = _read_metrics(config, metrics_file, pipeline, written[metrics_file])
    if not written[model_file] or not _written(model_file):
        back = " (the file that was there is back in place)" if model_file.exists() else ""
        raise TrainingError(
            f"mlops.yaml: train.outputs.model: the training command wrote no model at "
            f"'{config.train.model_output}'{back}",
            hint="save the fitted estimator there, e.g. joblib.dump(model, path)",
        )

    artifacts = trace.write_artifacts(work)
    lineage_dir = artifacts["lineage"]  # the inputs' manifest (and the stages' graph)
    if pipeline is None or any(s.name == pipeline.training and s.state == RAN for s in stages):
        artifacts["logs"] = log  # a cached training stage has no log of this train
    if pipeline is None or any(s.state == RAN for s in stages):  # a command of the PR's ran
        tags[TAG_ISOLATION] = isolation_for(config.train.isolation).line
    logged_params = {k: str(v) for k, v in params.items()}
    if pipeline is not None:
        held = stage_artifacts(work / "stages", config.root, stages, trace.environment_sha256)
        artifacts.update(held)
        graph = {"training": pipeline.training, "stages": [stage_summary(s, True) for s in stages]}
        write_json_atomic(lineage_dir / STAGES_ARTIFACT.rsplit("/", 1)[1], graph)
        tags.update({f"mlops.stage.{s.name}.outs": s.key for s in stages if s.holder is None})
        logged_params = {**stage_params(stages), **logged_params}
        metrics = {**metrics, **{f"stage.{s.name}.seconds": s.seconds for s in stages}}
    record, note = log_model_run(
        config, registry, model_file, logged_params, metrics, tags, artifacts, timings, progress,
        journal,
    )  # fmt: skip
    cache = StageCache(JobFolder(config.root).cache)
    for s in stages:
        if s.holder is None:  # this run holds its outs now: later trains need not upload them
            cache.set_holder(s.name, s.key, record.run_id)
    stages = [s if s.holder else dataclasses.replace(s, holder=record.run_id) for s in stages]
    result = finish(config, record, False, key, trace, started, stages, journal)
    return dataclasses.replace(result, timings=timings, importance_note=note)


def log_model_run(
    config: Config,
    registry: ModelRegistry,
    model_file: Path,
    params: dict[str, str],
    metrics: dict[str, float],
    tags: dict[str, str],
    artifacts: dict[str, Path],
    timings: dict[str, float],
    progress: Callable[[str, int, int], None] | None,
    journal: TrainJournal,
) -> tuple[RunRecord, str]:
    """The model at ``model_file`` logged as the journal's run (made now if the train has
    none yet) with its evaluation on evaluate.data (when it exists), scored while the
    runner's child holds it; returns the run and what the importance budget lowered.
    ``timings`` gets the evaluation's, the importance's and the logging's seconds."""
    example, evaluate = None, None
    notes: list[str] = []
    data = config.resolve(config.evaluate.data)
    if data.is_file():
        rows = load_evaluation(config)
        example = rows.features.head(5)

        def evaluate(model: Any) -> str | None:  # scored while the model is loaded anyway
            said = None if progress is None else functools.partial(progress, "importance")
            found = predictions.record(model, rows, settings_for(config), said)
            timings["evaluation"] = found.predict_s
            if found.importance is not None and found.importance.plan is not None:
                timings["importance"] = found.importance.plan.seconds
                notes.append(found.importance.plan.note)
            return found.text

    logging_started = time.monotonic()
    run_id = journal.start_run(tags)
    record = registry.log_run(
        NewRun(
            experiment=config.registry.experiment,
            artifact_location=config.registry.artifact_location,
            params=params,
            metrics=metrics,
            tags=tags,
            model_file=model_file,
            artifacts=artifacts,
            example_features=example,
            task=config.model.task,
            evaluate=evaluate,
            isolation=config.train.isolation,
            code_paths=code_paths(config),
            run_id=run_id,
        )
    )
    logged = time.monotonic() - logging_started
    timings["logging"] = logged - timings.get("evaluation", 0.0) - timings.get("importance", 0.0)
    return record, next((n for n in notes if n), "")


def code_paths(config: Config) -> tuple[Path, ...]:
    """model.code_paths, resolved; one that does not exist is an error naming it."""
    found = []
    for i, entry in enumerate(config.model.code_paths):
        path = config.resolve(entry)
        if not path.exists():
            raise InputError(
                f"mlops.yaml: model.code_paths.{i}: '{entry}' does not exist",
                hint="list the local modules the model imports, relative to mlops.yaml",
            )
        found.append(path)
    return tuple(found)


def _written(path: Path) -> bool:
    """A model file, or a pyfunc model folder (its MLmodel), is there."""
    return path.is_file() or (path / "MLmodel").is_file()


def _inputs(config: Config, pipeline: Pipeline | None) -> tuple[str, ...]:
    """What the data fingerprint covers: train.inputs, and with stages every dep that no stage
    writes (the raw data and the code)."""
    code = config.model.code_paths  # code the model imports: a change of it retrains
    if pipeline is None:
        return tuple(dict.fromkeys([*config.train.inputs, *code]))
    raw = [d for s in pipeline.stages for d in s.deps if pipeline.producer(d) is None]
    return tuple(dict.fromkeys([*config.train.inputs, *code, *raw]))


def dry_run(
    config: Config,
    registry: ModelRegistry,
    overrides: Mapping[str, Scalar] | None = None,
    use_cache: bool = True,
    env: Mapping[str, str] | None = None,
) -> list[StageRun]:
    """What `train` would run and why, running and restoring nothing: each stage of the
    pipeline, or the one training command."""
    env = dict(os.environ if env is None else env)
    check_overrides(config, overrides or {})
    params: dict[str, Scalar] = {**config.train.params, **(overrides or {})}
    pipeline = load_pipeline(config)
    use_cache = use_cache and config.train.cache
    trace = provenance.collect(config.root, _inputs(config, pipeline), env)
    if pipeline is not None:
        remote = RegistryStages(registry, config.registry.experiment)
        return run_stages(
            config, pipeline, params, trace.environment_sha256, _never, remote, use_cache,
            dry_run=True,
        )  # fmt: skip
    key = cache_key(config, params, trace)
    hit = registry.find_cached_run(config.registry.experiment, key) if use_cache else None
    if hit is not None:
        why = f"unchanged; run {hit.run_id} has this cache key"
        return [StageRun("train", key, "cached", why, 0.0, config.train.command, ())]
    why = (
        "the cache is off (--no-cache or train.cache: false)"
        if not use_cache
        else "no run with this cache key (train.inputs, params, command or environment changed)"
    )
    return [StageRun("train", key, "would run", why, 0.0, config.train.command, ())]


def _never(stage: Stage, log: Path) -> None:
    raise AssertionError(f"a dry run ran stage {stage.name}")  # run_stages never calls it


class RegistryStages:
    """The stage cache beyond this disk: the MLflow run tagged ``mlops.stage.NAME.outs=KEY``
    holds ``stages/NAME/record.json`` and the outs under ``stages/NAME/outs/``."""

    def __init__(self, registry: ModelRegistry, experiment: str) -> None:
        self.registry, self.experiment = registry, experiment

    def find(self, stage: str, key: str) -> str | None:
        found = self.registry.find_run_with_tag(self.experiment, f"mlops.stage.{stage}.outs", key)
        return found.run_id if found is not None else None

    def record(self, run_id: str, stage: str) -> dict[str, Any] | None:
        text = self.registry.read_artifact_text(run_id, f"stages/{stage}/record.json")
        try:
            found = json.loads(text) if text else None
        except ValueError:
            return None
        return found if isinstance(found, dict) and isinstance(found.get("outs"), dict) else None

    def fetch(self, run_id: str, stage: str, dest: Path) -> Path:
        return self.registry.download_artifacts(run_id, f"stages/{stage}", dest)


def _run_stage(
    config: Config, params: Mapping[str, Scalar], env: dict[str, str], stage: Stage, log: Path
) -> None:
    run_command(
        config, stage.command, params, env, log, shell=stage.shell,
        cwd=config.root / stage.wdir, what=f"stage '{stage.name}' command",
    )  # fmt: skip


@contextlib.contextmanager
def _set_aside(folder: Path, outputs: tuple[Path, ...]) -> Iterator[None]:
    """The outputs a last run left, moved aside while the command runs (never picked up as
    this run's), and put back where the command wrote none: a file that was not the last
    run's output (a model handed over by a colleague) is never lost. The last set aside stays
    in ``folder`` until the next run."""
    if folder.exists():
        shutil.rmtree(folder)
    moved: list[tuple[Path, Path]] = []
    for i, path in enumerate(outputs):
        if (path.is_file() or path.is_dir()) and not path.is_symlink():
            kept = folder / f"{i}-{path.name}"
            kept.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(path, kept)
            moved.append((path, kept))
    try:
        yield
    finally:
        for path, kept in moved:
            if not path.exists():
                shutil.move(kept, path)


def _read_metrics(
    config: Config, path: Path, pipeline: Pipeline | None = None, written: bool = True
) -> dict[str, float]:
    """The command's own metrics. None of its own is fine (mlops-ci computes evaluate.metrics):
    an empty object always, no file at all when mlops.yaml names no train.outputs.metrics and
    declares no train.metrics. With stages, only a file a stage writes is read (another one
    could be a stale leftover)."""
    where = f"mlops.yaml: train.outputs.metrics: '{config.train.metrics_output}'"
    if pipeline is not None and pipeline.producer(config.train.metrics_output) is None:
        return {}
    if not written or not path.is_file():  # a file set back after the run is not its own
        if not config.train.metrics_output_set and not config.train.declared_metrics:
            return {}
        raise TrainingError(
            f"{where}: the training command wrote no metrics file",
            hint='write a JSON object such as {"accuracy": 0.93}',
        )
    try:
        raw = json.loads(path.read_text("utf-8"))
    except ValueError as err:
        raise TrainingError(f"{where}: not valid JSON ({err})") from None
    if not isinstance(raw, dict):
        raise TrainingError(f"{where}: must be a JSON object of metric name to number")
    metrics: dict[str, float] = {}
    for name, value in raw.items():
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or not math.isfinite(value)
        ):
            raise TrainingError(f"{where}: metric '{name}' is {value!r}, not a finite number")
        metrics[str(name)] = float(value)
    missing = [m for m in config.train.declared_metrics if m not in metrics]
    if missing:
        raise TrainingError(
            f"{where}: lacks metric(s) {', '.join(missing)} declared in train.metrics "
            f"(it has {', '.join(metrics)})"
        )
    return metrics


def finish(
    config: Config,
    run: RunRecord,
    cached: bool,
    key: str,
    trace: provenance.Lineage,
    started: float,
    stages: list[StageRun] | None = None,
    journal: TrainJournal | None = None,
) -> TrainResult:
    """The result of a trained or reused run, also saved as .mlops/train.json (the journal's
    outcome: which train, on which host, started and finished when)."""
    result = TrainResult(
        run_id=run.run_id,
        cached=cached,
        cache_key=key,
        params=run.params,
        metrics=run.metrics,
        model_uri=run.model_uri,
        data_fingerprint=trace.inputs.sha256,
        duration_s=time.monotonic() - started,
        tags=run.tags,
        stages=stages or [],
    )
    record = {
        "status": FINISHED,
        "run_id": result.run_id,
        "cached": result.cached,
        "cache_key": result.cache_key,
        "model_uri": result.model_uri,
        "metrics": result.metrics,
        "params": result.params,
        "data_fingerprint": result.data_fingerprint,
    }
    if journal is not None:
        held = ("train_id", "pid", "hostname", "started_at")
        record.update({k: journal.record[k] for k in held if k in journal.record})
        record["finished_at"] = time.time()
    if TAG_ISOLATION in run.tags:
        record["isolation"] = run.tags[TAG_ISOLATION]
    if stages:
        record["stages"] = [stage_summary(s) for s in stages]
    write_json_atomic(JobFolder(config.root).train, record)
    return result
