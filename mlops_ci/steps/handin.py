"""train --model PATH: a model trained elsewhere (a model file or an MLflow model folder)
recorded as the candidate run, with no command run.

Its lineage says it was handed in, its sha256 and by whom; it is evaluated on evaluate.data
and logged as a trained model is, through the model runner (it is code like any other). The
same file handed in again with nothing else changed reuses its run (the cache key is its
sha256, the code it imports, the environment, the evaluation data and its settings).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from mlops_ci import provenance
from mlops_ci.config.types import Config
from mlops_ci.errors import InputError
from mlops_ci.model.integrity import digest, file_manifest
from mlops_ci.records import JobFolder
from mlops_ci.registry import TAG_CACHE_KEY, ModelRegistry
from mlops_ci.steps.journal import TrainJournal
from mlops_ci.steps.train import TrainResult, finish, log_model_run

TAG_HANDED_IN = "mlops.model.handed_in"
TAG_HANDED_SHA256 = "mlops.model.sha256"
TAG_HANDED_BY = "mlops.model.handed_in_by"
TAG_HANDED_NAME = "mlops.model.source"


def model_sha256(path: Path) -> str:
    """sha256 of a model file, or of a model folder's file manifest."""
    if path.is_dir():
        return digest(file_manifest(path))
    return provenance.sha256_file(path)


def hand_in(
    config: Config,
    registry: ModelRegistry,
    path: Path,
    use_cache: bool = True,
    env: Mapping[str, str] | None = None,
    progress: Callable[[str, int, int], None] | None = None,
    notify: Callable[[str], None] | None = None,
) -> TrainResult:
    """Record the model at ``path`` as a run of the experiment; see the module docstring.
    .mlops/train.json is its journal as a train's is (``steps.journal``); ``notify`` hears
    what it settled of a dead train before it."""
    env = dict(os.environ if env is None else env)
    with TrainJournal(config, registry, env, notify) as journal:
        try:
            return _hand_in(config, registry, path, use_cache, env, progress, journal)
        except BaseException as err:
            journal.failed(err)
            raise


def _hand_in(
    config: Config,
    registry: ModelRegistry,
    path: Path,
    use_cache: bool,
    env: dict[str, str],
    progress: Callable[[str, int, int], None] | None,
    journal: TrainJournal,
) -> TrainResult:
    started = time.monotonic()
    shown = f"--model {path}"
    if not path.exists():
        raise InputError(f"{shown}: no such file or folder")
    if path.is_dir() and not (path / "MLmodel").is_file():
        raise InputError(
            f"{shown}: a folder must be an MLflow model folder (it has no MLmodel file)",
            hint="hand in a model file (.joblib, .pkl, .skops, .onnx, XGBoost .json, LightGBM "
            ".txt) or the folder mlflow.pyfunc.save_model wrote",
        )
    if not path.is_dir() and not path.is_file():
        raise InputError(f"{shown}: not a regular file or folder")
    sha = model_sha256(path)
    trace = provenance.collect(config.root, config.model.code_paths, env)
    data = config.resolve(config.evaluate.data)
    body = {
        "handed_in": sha,
        "flavor": config.model.flavor,
        "task": config.model.task,
        "code": trace.inputs.sha256,
        "environment": trace.environment_sha256,
        # what the run records of the model is its evaluation: new rows or settings, new run
        "evaluate": dataclasses.asdict(config.evaluate),
        "evaluation_data": provenance.sha256_file(data) if data.is_file() else None,
    }
    key = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
    if use_cache and config.train.cache:
        hit = registry.find_cached_run(config.registry.experiment, key)
        if hit is not None:
            return finish(config, hit, True, key, trace, started, journal=journal)
    artifacts = trace.write_artifacts(JobFolder(config.root).train_work)
    tags = {
        **trace.tags(),
        TAG_CACHE_KEY: key,
        "mlops.model.name": config.model.name,
        TAG_HANDED_IN: "true",
        TAG_HANDED_SHA256: sha,
        TAG_HANDED_BY: trace.ci.actor or "unknown",
        TAG_HANDED_NAME: path.name,
    }
    timings: dict[str, float] = {}
    record, note = log_model_run(
        config, registry, path.resolve(), {}, {}, tags, artifacts, timings, progress, journal
    )
    result = finish(config, record, False, key, trace, started, journal=journal)
    return TrainResult(**{**result.__dict__, "timings": timings, "importance_note": note})
