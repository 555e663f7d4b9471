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
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mlops_ci import evalcache, lineage
from mlops_ci.config import Config, Scalar
from mlops_ci.credentials import safe_url
from mlops_ci.errors import InputError, TrainingError
from mlops_ci.evaldata import load_evaluation
from mlops_ci.importance import settings_for
from mlops_ci.records import mlops_dir, read_json, write_json_atomic, write_text_atomic
from mlops_ci.registry import TAG_CACHE_KEY, ModelRegistry, NewRun, RunRecord

RECORD = "train.json"
PYTHON = "{python}"
FINISHED, FAILED = "finished", "failed"
_LOG_TAIL_LINES = 5


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


def cache_key(config: Config, params: Mapping[str, Scalar], trace: lineage.Lineage) -> str:
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
) -> TrainResult:
    """Train (or reuse a cached run) and record it in MLflow with its lineage.

    A failure is recorded in .mlops/train.json too, so that compare and register refuse to act
    on the run of an earlier, successful train. ``progress`` hears (what, done, in all) of the
    permutation importance.
    """
    try:
        return _train(config, registry, overrides, use_cache, env, progress)
    except BaseException as err:
        _record_failure(config, err)
        raise


def last_trained_run(config: Config, default: str | None = None) -> str:
    """The run of this checkout's last successful `train`; refused when the last train failed.

    ``default`` is taken only when this checkout has no train record at all.
    """
    record = read_json(mlops_dir(config.root) / RECORD)
    if not isinstance(record, dict) or not (record.get("run_id") or record.get("status")):
        if default:
            return default
        raise InputError(
            "no run given and no .mlops/train.json found",
            hint="run `mlops-ci train` first or pass --run RUN_ID",
        )
    if record.get("status") == FAILED:
        raise InputError(
            f"the last `mlops-ci train` failed ({record.get('error', 'no reason recorded')}); "
            "refusing to act on the run of an earlier train",
            hint="fix the training and rerun `mlops-ci train`, or pass --run RUN_ID explicitly",
        )
    return str(record["run_id"])


def _record_failure(config: Config, err: BaseException) -> None:
    message = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    if isinstance(err, KeyboardInterrupt):
        message = "interrupted"
    record = {"status": FAILED, "run_id": None, "error": message[:500], "failed_at": time.time()}
    with contextlib.suppress(OSError):  # the original error matters more than its record
        write_json_atomic(mlops_dir(config.root) / RECORD, record)


def _train(
    config: Config,
    registry: ModelRegistry,
    overrides: Mapping[str, Scalar] | None,
    use_cache: bool,
    env: Mapping[str, str] | None,
    progress: Callable[[str, int, int], None] | None,
) -> TrainResult:
    env = dict(os.environ if env is None else env)
    started = time.monotonic()
    check_overrides(config, overrides or {})
    params: dict[str, Scalar] = {**config.train.params, **(overrides or {})}
    trace = lineage.collect(config.root, config.train.inputs, env)
    key = cache_key(config, params, trace)
    experiment = config.registry.experiment

    if use_cache and config.train.cache:
        hit = registry.find_cached_run(experiment, key)
        if hit is not None:
            return _finish(config, hit, True, key, trace, started)

    work = mlops_dir(config.root) / "train"
    model_file = config.resolve(config.train.model_output)
    metrics_file = config.resolve(config.train.metrics_output)
    for output, stale in (("model", model_file), ("metrics", metrics_file)):
        if stale.is_dir():
            raise InputError(
                f"mlops.yaml: train.outputs.{output}: '{stale}' is a folder; name the file the "
                "training command writes"
            )
        stale.unlink(missing_ok=True)  # never pick up the last run's outputs
    command_started = time.monotonic()
    log = _run_command(config, params, env, work / "train.log")
    timings = {"command": time.monotonic() - command_started}
    metrics = _read_metrics(config, metrics_file)
    if not model_file.is_file():
        raise TrainingError(
            f"mlops.yaml: train.outputs.model: the training command wrote no model at "
            f"'{config.train.model_output}'",
            hint="save the fitted estimator there, e.g. joblib.dump(model, path)",
        )

    artifacts = {
        "lineage": write_json_atomic(work / "inputs.manifest.json", trace.inputs.manifest),
        "lineage/environment": write_text_atomic(
            work / "requirements.lock", trace.environment_lock
        ),
        "logs": log,
    }
    tags = {**trace.tags(), TAG_CACHE_KEY: key, "mlops.model.name": config.model.name}
    example, evaluate = None, None
    data = config.resolve(config.evaluate.data)
    if data.is_file():
        rows = load_evaluation(config)
        example = rows.features.head(5)

        def evaluate(model: Any) -> str | None:  # scored while the model is loaded anyway
            said = None if progress is None else functools.partial(progress, "importance")
            found = evalcache.record(model, rows, settings_for(config), said)
            timings["evaluation"] = found.predict_s
            if found.importance is not None and found.importance.plan is not None:
                timings["importance"] = found.importance.plan.seconds
                notes.append(found.importance.plan.note)
            return found.text

    notes: list[str] = []
    logging_started = time.monotonic()

    record = registry.log_run(
        NewRun(
            experiment=experiment,
            artifact_location=config.registry.artifact_location,
            params={k: str(v) for k, v in params.items()},
            metrics=metrics,
            tags=tags,
            model_file=model_file,
            artifacts=artifacts,
            example_features=example,
            task=config.model.task,
            evaluate=evaluate,
        )
    )
    logged = time.monotonic() - logging_started
    timings["logging"] = logged - timings.get("evaluation", 0.0) - timings.get("importance", 0.0)
    result = _finish(config, record, False, key, trace, started)
    note = next((n for n in notes if n), "")
    return dataclasses.replace(result, timings=timings, importance_note=note)


# Credentials of the CI platform, the registry and mlops-ci itself: the training code is the
# pull request's code, so it gets none of them (data credentials such as AWS_* stay). MLflow
# reads the registry credentials from these; mlops-ci logs the run itself, so the command needs
# none of them.
SECRET_VARIABLES = (
    "GITHUB_TOKEN",
    "GH_TOKEN",
    "ACTIONS_RUNTIME_TOKEN",
    "ACTIONS_ID_TOKEN_REQUEST_TOKEN",
    "ACTIONS_ID_TOKEN_REQUEST_URL",
    "SYSTEM_ACCESSTOKEN",
    "AZURE_DEVOPS_EXT_PAT",
    "MLFLOW_TRACKING_TOKEN",
    "MLFLOW_TRACKING_USERNAME",
    "MLFLOW_TRACKING_PASSWORD",
    "MLFLOW_TRACKING_CLIENT_CERT_PATH",
    "DATABRICKS_TOKEN",
    "DATABRICKS_CLIENT_SECRET",
    "MLOPS_ADMIN_TOKEN",
)
# Every variable with these prefixes: action inputs (act-based runners such as Gitea's and
# Forgejo's give composite steps INPUT_*, a github-token input among them) and Azure's secret
# task variables.
SECRET_PREFIXES = ("INPUT_", "SECRET_")
# Kept, but without userinfo or secret query values: a script may read where runs go.
URI_VARIABLES = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")


def secret_variables(config: Config) -> list[str]:
    """Every variable the training command does not get: the fixed list, the admin token's
    variable and each webhook's signing secret (``notify.webhooks[].secret_env``)."""
    named = [config.serve.admin_token_env]
    named += [hook.secret_env for hook in config.notify.webhooks if hook.secret_env]
    return sorted({*SECRET_VARIABLES, *(name.upper() for name in named)})


def command_environment(env: Mapping[str, str], secret: list[str]) -> dict[str, str]:
    """The environment of the training command: this one without the secret variables and
    the ``SECRET_PREFIXES`` ones, and the tracking URIs without their credentials."""
    hidden = set(secret)
    out = {
        k: v
        for k, v in env.items()
        if k.upper() not in hidden and not k.upper().startswith(SECRET_PREFIXES)
    }
    for name in URI_VARIABLES:
        if out.get(name):
            out[name] = safe_url(out[name], userinfo="")
    return out


def _run_command(
    config: Config, params: Mapping[str, Scalar], env: dict[str, str], log_path: Path
) -> Path:
    """Run the command without a shell; its output goes to a log that becomes an artifact."""
    try:
        argv = shlex.split(config.train.command)
    except ValueError as err:
        raise InputError(f"mlops.yaml: train.command: cannot be split into words: {err}") from None
    # {python} is the interpreter mlops-ci runs in (a pipx or CI venv), whatever is on PATH.
    argv = [sys.executable if word == PYTHON else word for word in argv]
    env = command_environment(env, secret_variables(config))
    env["MLOPS_PARAMS"] = json.dumps(params, sort_keys=True)
    env.update({f"MLOPS_PARAM_{k.upper()}": str(v) for k, v in params.items()})
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("w", encoding="utf-8") as log:
        try:
            done = subprocess.run(
                argv,
                cwd=config.root,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                timeout=config.train.timeout_minutes * 60,
                check=False,
            )
        except FileNotFoundError:
            raise TrainingError(
                f"mlops.yaml: train.command: program '{argv[0]}' not found",
                hint="check the command runs in the folder of mlops.yaml",
            ) from None
        except subprocess.TimeoutExpired:
            raise TrainingError(
                f"mlops.yaml: train.command: still running after "
                f"{config.train.timeout_minutes:g} minutes (train.timeout_minutes); stopped"
            ) from None
    if done.returncode != 0:
        tail = log_path.read_text("utf-8", errors="replace").strip().splitlines()[-_LOG_TAIL_LINES:]
        last = tail[-1] if tail else "(no output)"
        raise TrainingError(
            f"mlops.yaml: train.command '{config.train.command}' exited with code "
            f"{done.returncode}: {last}",
            hint=f"full log: {log_path}",
        )
    return log_path


def _read_metrics(config: Config, path: Path) -> dict[str, float]:
    """The command's own metrics. None of its own is fine (mlops-ci computes evaluate.metrics):
    an empty object always, no file at all when mlops.yaml names no train.outputs.metrics and
    declares no train.metrics."""
    where = f"mlops.yaml: train.outputs.metrics: '{config.train.metrics_output}'"
    if not path.is_file():
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


def _finish(
    config: Config,
    run: RunRecord,
    cached: bool,
    key: str,
    trace: lineage.Lineage,
    started: float,
) -> TrainResult:
    """The result of a trained or reused run, also saved as .mlops/train.json."""
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
    write_json_atomic(mlops_dir(config.root) / RECORD, record)
    return result
