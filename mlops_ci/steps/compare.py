"""compare: score the candidate and the production model on the same rows, then apply the gate.

Verdicts: ``pass`` / ``fail`` against production, ``no-baseline`` when nothing is in production
yet (only the absolute rules then apply). Rules against production follow the metric's
direction, as MLflow's ``MetricThreshold`` does.
"""

from __future__ import annotations

import functools
import re
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlops_ci.config.types import Config
from mlops_ci.errors import GateFailed, InputError
from mlops_ci.evaluation import predictions as evalcache
from mlops_ci.evaluation.bootstrap import paired_bootstrap
from mlops_ci.evaluation.comparison import FAIL, NO_BASELINE, PASS, ComparisonResult, ModelScore
from mlops_ci.evaluation.data import EvaluationData, load_evaluation
from mlops_ci.evaluation.importance import Importance, Progress, Settings, permutation, settings_for
from mlops_ci.evaluation.rules import rule_checks, significance_check, slice_checks
from mlops_ci.evaluation.slices import SliceScore, cut, score_slices
from mlops_ci.metrics import Encoded, score
from mlops_ci.model.features import model_frame, onnx_frame
from mlops_ci.packaging import convert, cost, runtime
from mlops_ci.packaging.cost import Cost
from mlops_ci.packaging.runtime import Engine
from mlops_ci.records import (
    JobFolder,
    write_json_atomic,
    write_text_atomic,
)
from mlops_ci.registry import EVALUATION_ARTIFACT, ModelRegistry, RunRecord
from mlops_ci.report.comparison import markdown
from mlops_ci.runner import ModelRunner
from mlops_ci.steps.journal import check_finished, trained_run
from mlops_ci.steps.package import runner_peak_rss


def compare(
    config: Config,
    registry: ModelRegistry,
    run_id: str | None = None,
    progress: Callable[[str, int, int], None] | None = None,
) -> ComparisonResult:
    """Score both models on evaluate.data, apply gate.rules and the paired bootstrap;
    ``progress`` hears (what, done, in all) of the long parts (importance, costs). A model
    that must be loaded is loaded in one model runner for the verb (``mlops_ci.runner``),
    started only then: predictions train recorded need none."""
    with ModelRunner(config.train.isolation) as runner:
        return _compare(config, registry, runner, run_id, progress)


def _compare(
    config: Config,
    registry: ModelRegistry,
    runner: ModelRunner,
    run_id: str | None,
    progress: Callable[[str, int, int], None] | None,
) -> ComparisonResult:
    run = registry.get_run(run_id or trained_run(config, registry, "compare"))
    check_finished(run, "compared")
    data = load_evaluation(config)
    cand = _scored(
        registry, runner, run.run_id, _model_uri(run), data, f"candidate (run {run.run_id})"
    )
    _check_task(config, cand.scored.kind, f"the candidate (run {run.run_id})")
    production_version = registry.get_version_by_alias(
        config.model.name, config.registry.production_alias
    )
    predictions = [cand.scored.predictions]
    production_run: RunRecord | None = None
    changed: dict[str, list[str]] = {}
    scored_how = {"candidate": cand.how}
    if production_version is not None:
        if production_version.run_id:
            production_run = registry.get_run(production_version.run_id)
        # the run's record counts only if the version is that run's model
        same = production_run is not None and production_run.model_uri == production_version.source
        label = f"production ({config.model.name} v{production_version.version})"
        prod = _scored(
            registry,
            runner,
            production_run.run_id if same and production_run else None,
            production_version.source,
            data,
            label,
        )
        changed = _feature_change(cand.scored.columns, prod.scored.columns)
        predictions.append(prod.scored.predictions)
        scored_how["production"] = prod.how

    loaded: dict[str, Any] = {}  # uri -> the model, loaded once for costs and importance
    costs: dict[str, Cost] = {}
    if config.gate.cost_rules:
        models = {"candidate": cand} | ({"production": prod} if production_version else {})
        costs = _costs(
            config, registry, lambda m: _load(registry, runner, m, loaded), models, data,
            _said(progress, "cost"),
        )  # fmt: skip
    enc, encoded = Encoded.of(config.model.task, data.target.to_numpy(), *predictions)
    cand_scores = {m: score(m, enc, encoded[0]) for m in config.evaluate.metrics}
    cand_cost = costs["candidate"].metrics if costs else {}
    candidate = ModelScore("candidate", run.run_id, None, cand_scores, cand_cost)
    production = None
    significance = None
    if production_version is not None:
        production = ModelScore(
            "production",
            production_version.run_id,
            production_version.version,
            {m: score(m, enc, encoded[1]) for m in config.evaluate.metrics},
            costs["production"].metrics if costs else {},
        )
        significance = paired_bootstrap(
            config.gate.primary_metric,
            enc,
            encoded[0],
            encoded[1],
            samples=config.gate.bootstrap_samples,
            alpha=config.gate.significance,
            seed=config.gate.seed,
        )

    slice_scores: list[SliceScore] = []
    if data.slices is not None:
        spec = config.evaluate
        slice_scores = score_slices(
            cut(data.slices, spec.slice_bins, spec.slice_max),
            spec.metrics,
            enc,
            encoded[0],
            encoded[1] if production is not None else None,
        )
    checks = [
        check
        for i, rule in enumerate(config.gate.rules)
        for check in rule_checks(i, rule, run, candidate, production, production_run)
        + (
            slice_checks(i, rule, run, slice_scores, config.gate.min_slice_rows)
            if rule.slice == "all"
            else []
        )
    ]
    importance: dict[str, Importance] = {}
    unexplained: dict[str, str] = {}
    reused: list[str] = []
    # permutation importance shuffles a table's columns: a tensor model's arrays have none
    settings = settings_for(config) if hasattr(data.features, "iloc") else None
    if settings is not None:
        roles = [("candidate", cand)] + ([("production", prod)] if production_version else [])
        reused = [r for r, model in roles if _recorded_importance(model, settings) is not None]
        due = len(roles) - len(reused)
        budget = settings.max_seconds / max(due, 1)  # the step's budget, shared
        for role, model in roles:
            said = _said(progress, f"importance of the {role}")
            try:  # the why explains the verdict; a model it cannot explain keeps its verdict
                importance[role] = _importance(
                    lambda m: _load(registry, runner, m, loaded),
                    model,
                    data,
                    settings,
                    role,
                    budget,
                    said,
                )
            except InputError as err:
                unexplained[role] = str(err)
    if significance is not None:
        checks.append(significance_check(significance, config.gate.require_improvement))
    failed = any(c.status == FAIL for c in checks)
    verdict = FAIL if failed else (PASS if production is not None else NO_BASELINE)
    result = ComparisonResult(
        verdict=verdict,
        model=config.model.name,
        candidate=candidate,
        production=production,
        checks=tuple(checks),
        significance=significance,
        evaluation={
            "data": data.path,
            "sha256": data.sha256,
            "rows": data.rows,
            "scored": scored_how,
            **({"feature_change": changed} if changed else {}),
            **({"importance_failed": unexplained} if unexplained else {}),
            **({"importance_reused": reused} if reused else {}),
            **({"cost": _cost_record(config, costs)} if costs else {}),
            **({"model_runner": runner.isolation.line} if runner.started else {}),
            "primary_metric": config.gate.primary_metric,
            **({"min_slice_rows": config.gate.min_slice_rows} if slice_scores else {}),
        },
        created_at=time.time(),
        importance=importance,
        slices=tuple(slice_scores),
        changes=what_changed(production_run, run) if production_version is not None else {},
    )
    job = JobFolder(config.root)
    write_json_atomic(job.comparison, result.to_dict())
    write_text_atomic(job.comparison_md, markdown(result, config.evaluate.importance.top))
    return result


@dataclass(frozen=True)
class _Model:
    scored: evalcache.Scored
    how: str  # "at train": the run's record of these rows; "now": loaded and scored here
    uri: str
    label: str
    loaded: Any = None  # the model, when it was loaded here


def _scored(
    registry: ModelRegistry,
    runner: ModelRunner,
    run_id: str | None,
    uri: str,
    data: EvaluationData,
    label: str,
) -> _Model:
    """The model's predictions on ``data``: the run's own record when it scored exactly these
    rows at train time (no model to load), else the model loaded and scored now."""
    if run_id is not None:
        recorded = evalcache.cached(registry.read_artifact_text(run_id, EVALUATION_ARTIFACT), data)
        if recorded is not None:
            return _Model(recorded, "at train", uri, label)
    model = registry.load_model(uri, runner)
    return _Model(evalcache.scored(model, data, label), "now", uri, label, model)


def _costs(
    config: Config,
    registry: ModelRegistry,
    load: Callable[[_Model], Any],
    models: dict[str, _Model],
    data: EvaluationData,
    progress: Progress | None,
) -> dict[str, Cost]:
    """Both models' cost of serving, measured together (see ``mlops_ci.packaging.cost``). A
    native model is the verb's runner's ``RemoteModel``: its calls cross the runner's pipe,
    as both roles' do when both are native (the module says what that means for the gate);
    its memory is measured in a fresh runner's child that loads its downloaded files."""
    with tempfile.TemporaryDirectory(prefix="mlops-cost-") as tmp:
        engines: dict[str, Engine] = {}
        notes: dict[str, tuple[str, str]] = {}
        for role, model in models.items():
            work = Path(tmp) / role
            native = load(model)
            files = registry.download_model(model.uri, work / "files")
            size = sum(p.stat().st_size for p in files.rglob("*") if p.is_file())
            features = model_frame(native, data.features, data.path, f"the {role}")
            engines[role], notes[role] = _engine(config, native, features, work, size, files)
        figures = cost.measure(engines, config.gate.cost, progress)
    return {
        role: Cost(
            notes[role][0],
            notes[role][1],
            figures[role],
            int(figures[role].pop("calls")),
            engines[role].provider,
        )  # fmt: skip
        for role in models
    }


def _engine(
    config: Config, native: Any, features: Any, work: Path, size: int, files: Path
) -> tuple[Engine, tuple[str, str]]:
    """The model as its version would serve it: ONNX where package would convert it (same
    decision, same parity check; the conversion made in the runner's child), else the native
    model, called through the runner, its memory probed in a fresh runner's child loading
    ``files``; with the runtime's name and why."""
    probe_rows = config.gate.cost.batch_rows
    try:
        converted = runtime.try_onnx(  # as package converts it: features.onnx_frame
            config, native, convert.native_outputs(native, features), onnx_frame(features)
        )
    except (InputError, GateFailed) as err:  # package.onnx: true would refuse to package it
        converted = f"ONNX: not used — {str(err).removeprefix('ONNX ')}"
    if isinstance(converted, str):  # only then the native model's engine and probe
        native_engine = runtime.native_engine(
            native, features, work, size, probe_rows,
            folder=files, measured_by=runner_peak_rss(config.train.isolation),
        )  # fmt: skip
        return native_engine, (native_engine.name, converted)
    path = work / runtime.ONNX_FILE
    path.write_bytes(converted[0].onnx)
    layout = converted[0].layout
    engine = runtime.onnx_engine(path, layout, onnx_frame(features), config, work, probe_rows)
    return engine, ("onnxruntime", "")


def _cost_record(config: Config, costs: dict[str, Cost]) -> dict[str, Any]:
    """How the costs were measured, and with what, for the report and the record."""
    spec = config.gate.cost
    return {
        "runtime": {role: c.runtime for role, c in costs.items()},
        "note": {role: c.note for role, c in costs.items() if c.note},
        "provider": {role: c.provider for role, c in costs.items() if c.provider},
        "calls": {role: c.calls for role, c in costs.items()},
        "rounds": spec.rounds,
        "round_seconds": spec.round_seconds,
        "batch_rows": spec.batch_rows,
    }


def _said(progress: Callable[[str, int, int], None] | None, label: str) -> Progress | None:
    return None if progress is None else functools.partial(progress, label)


def _recorded_importance(model: _Model, settings: Settings) -> Importance | None:
    """Train's record of the importance when made with these settings on these rows (the
    predictions' sha256 says the rows are these)."""
    recorded = model.scored.importance
    if model.how == "at train" and recorded is not None and recorded.settings == settings:
        return recorded
    return None


def _load(
    registry: ModelRegistry, runner: ModelRunner, model: _Model, loaded: dict[str, Any]
) -> Any:
    """The model object: as scored here, else loaded from the registry once per compare."""
    if model.loaded is not None:
        return model.loaded
    if model.uri not in loaded:
        loaded[model.uri] = registry.load_model(model.uri, runner)
    return loaded[model.uri]


def _importance(
    load: Callable[[_Model], Any],
    model: _Model,
    data: EvaluationData,
    settings: Settings,
    role: str,
    budget_s: float,
    progress: Progress | None,
) -> Importance:
    """Train's record of it, else computed now on the loaded model within ``budget_s``."""
    recorded = _recorded_importance(model, settings)
    if recorded is not None:
        return recorded
    return permutation(load(model), data, settings, role, budget_s, progress)


# Lineage tags whose change a reviewer needs to see beside the verdict.
_CHANGED_TAGS = {"commit": "mlops.git.commit", "data_fingerprint": "mlops.data.fingerprint"}


_STAGE_KEY = re.compile(r"stage\.[A-Za-z0-9_][A-Za-z0-9_.-]*\.key")


def what_changed(production: RunRecord | None, candidate: RunRecord) -> dict[str, Any]:
    """The params (and code commit, data fingerprint) that differ between the production run
    and the candidate run; {"unknown": true} when production has no run to read."""
    if production is None:
        return {"unknown": True}
    differ = [
        name
        for name in sorted(set(production.params) | set(candidate.params))
        if production.params.get(name) != candidate.params.get(name)
    ]
    # A pipeline's stage.NAME.* params are the stages' bookkeeping: said as the stages whose
    # key (command, deps, params, environment) differs, not five lines each.
    params = {
        name: [production.params.get(name), candidate.params.get(name)]
        for name in differ
        if not name.startswith("stage.")
    }
    out: dict[str, Any] = {"params": params} if params else {}
    stages = [n[len("stage.") : -len(".key")] for n in differ if _STAGE_KEY.fullmatch(n)]
    if stages:
        out["stages"] = stages
    for key, tag in _CHANGED_TAGS.items():
        before, after = production.tags.get(tag), candidate.tags.get(tag)
        if before != after:
            out[key] = [before, after]
    return out


def _feature_change(
    new: tuple[str, ...] | None, old: tuple[str, ...] | None
) -> dict[str, list[str]]:
    """Columns the candidate was trained on that production was not, and the reverse."""
    if new is None or old is None or set(new) == set(old):
        return {}
    return {
        "added": [c for c in new if c not in old],
        "removed": [c for c in old if c not in new],
    }


def _check_task(config: Config, kind: str, label: str) -> None:
    """model.task must say what the model is: classification metrics of a regressor's values
    (or the reverse) would be numbers without meaning. Models scikit-learn cannot tell (an
    ONNX file, a bare object with predict) are taken at their word."""
    if not kind or kind == config.model.task:
        return
    raise InputError(
        f"mlops.yaml: model.task is {config.model.task}, but {label} model is a "
        f"{'classifier' if kind == 'classification' else 'regressor'}",
        hint=f"set model.task: {kind} and evaluate.metrics to {kind} metrics",
    )


def _model_uri(run: RunRecord) -> str:
    if run.model_uri is None:
        raise InputError(
            f"run '{run.run_id}' has no model logged by mlops-ci train (tag mlops.model_uri)",
            hint="compare runs recorded by `mlops-ci train`",
        )
    return run.model_uri
