"""compare: score the candidate and the production model on the same rows, then apply the gate.

Verdicts: ``pass`` / ``fail`` against production, ``no-baseline`` when nothing is in production
yet (only the absolute rules then apply). Rules against production follow the metric's
direction, as MLflow's ``MetricThreshold`` does.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from mlops_ci import evalcache
from mlops_ci import markdown as md
from mlops_ci.bootstrap import BootstrapResult, paired_bootstrap
from mlops_ci.config import Config, Rule
from mlops_ci.errors import InputError
from mlops_ci.evaldata import EvaluationData, load_evaluation
from mlops_ci.metrics import METRICS, Encoded, score
from mlops_ci.records import mlops_dir, read_json, write_json_atomic, write_text_atomic
from mlops_ci.registry import ModelRegistry, RunRecord
from mlops_ci.steps.train import last_trained_run

RECORD = "comparison.json"
REPORT = "comparison.md"
PASS, FAIL, NO_BASELINE = "pass", "fail", "no-baseline"


@dataclass(frozen=True)
class ModelScore:
    role: str  # candidate | production
    run_id: str | None
    version: str | None
    metrics: dict[str, float]


@dataclass(frozen=True)
class Check:
    name: str  # e.g. "f1_macro not_worse_than_production (tolerance 0.005)"
    metric: str
    status: str  # pass | fail | skipped
    detail: str


@dataclass(frozen=True)
class ComparisonResult:
    verdict: str
    model: str
    candidate: ModelScore
    production: ModelScore | None
    checks: tuple[Check, ...]
    significance: BootstrapResult | None
    evaluation: dict[str, Any]
    created_at: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @staticmethod
    def from_dict(data: dict[str, Any]) -> ComparisonResult:
        sig = data.get("significance")
        prod = data.get("production")
        return ComparisonResult(
            verdict=data["verdict"],
            model=data["model"],
            candidate=ModelScore(**data["candidate"]),
            production=ModelScore(**prod) if prod else None,
            checks=tuple(Check(**c) for c in data["checks"]),
            significance=BootstrapResult(**sig) if sig else None,
            evaluation=data["evaluation"],
            created_at=data["created_at"],
        )


def compare(config: Config, registry: ModelRegistry, run_id: str | None = None) -> ComparisonResult:
    """Score both models on evaluate.data, apply gate.rules and the paired bootstrap."""
    run = registry.get_run(run_id or last_trained_run(config))
    _check_finished(run)
    data = load_evaluation(config)
    cand = _scored(registry, run.run_id, _model_uri(run), data, f"candidate (run {run.run_id})")
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
            production_run.run_id if same and production_run else None,
            production_version.source,
            data,
            label,
        )
        changed = _feature_change(cand.scored.columns, prod.scored.columns)
        predictions.append(prod.scored.predictions)
        scored_how["production"] = prod.how

    enc, encoded = Encoded.of(config.model.task, data.target.to_numpy(), *predictions)
    cand_scores = {m: score(m, enc, encoded[0]) for m in config.evaluate.metrics}
    candidate = ModelScore("candidate", run.run_id, None, cand_scores)
    production = None
    significance = None
    if production_version is not None:
        production = ModelScore(
            "production",
            production_version.run_id,
            production_version.version,
            {m: score(m, enc, encoded[1]) for m in config.evaluate.metrics},
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

    checks = [
        check
        for i, rule in enumerate(config.gate.rules)
        for check in _rule_checks(i, rule, run, candidate, production, production_run)
    ]
    if significance is not None:
        checks.append(_significance_check(significance, config.gate.require_improvement))
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
        },
        created_at=time.time(),
    )
    folder = mlops_dir(config.root)
    write_json_atomic(folder / RECORD, result.to_dict())
    write_text_atomic(folder / REPORT, markdown(result))
    return result


def load_comparison(config: Config) -> ComparisonResult | None:
    data = read_json(mlops_dir(config.root) / RECORD)
    return ComparisonResult.from_dict(data) if data else None


@dataclass(frozen=True)
class _Model:
    scored: evalcache.Scored
    how: str  # "at train": the run's record of these rows; "now": loaded and scored here


def _scored(
    registry: ModelRegistry, run_id: str | None, uri: str, data: EvaluationData, label: str
) -> _Model:
    """The model's predictions on ``data``: the run's own record when it scored exactly these
    rows at train time (no model to load), else the model loaded and scored now."""
    if run_id is not None:
        recorded = evalcache.cached(registry, run_id, data)
        if recorded is not None:
            return _Model(recorded, "at train")
    return _Model(evalcache.scored(registry.load_model(uri), data, label), "now")


def _recorded(result: ComparisonResult) -> str:
    """Which predictions train recorded on these very rows (said, never silently reused)."""
    scored = result.evaluation.get("scored") or {}
    roles = [role for role, how in scored.items() if how == "at train"]
    return f"; predictions of the {' and '.join(roles)} as train recorded them" if roles else ""


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


def _check_finished(run: RunRecord) -> None:
    if run.status != "FINISHED":
        raise InputError(
            f"run '{run.run_id}' is {run.status}, not FINISHED: a failed or unfinished training "
            "run is never compared",
            hint="rerun `mlops-ci train`",
        )


def _model_uri(run: RunRecord) -> str:
    if run.model_uri is None:
        raise InputError(
            f"run '{run.run_id}' has no model logged by mlops-ci train (tag mlops.model_uri)",
            hint="compare runs recorded by `mlops-ci train`",
        )
    return run.model_uri


def _value(metric: str, score: ModelScore | None, run: RunRecord | None) -> float | None:
    if score is not None and metric in score.metrics:
        return score.metrics[metric]
    if run is not None and metric in run.metrics:
        return run.metrics[metric]
    return None


def _rule_checks(
    i: int,
    rule: Rule,
    run: RunRecord,
    candidate: ModelScore,
    production: ModelScore | None,
    production_run: RunRecord | None,
) -> list[Check]:
    m = rule.metric
    cand = _value(m, candidate, run)
    if cand is None:
        raise InputError(
            f"mlops.yaml: gate.rules.{i}.metric: '{m}' is neither in evaluate.metrics nor "
            f"logged by run {run.run_id} (it logged: {', '.join(sorted(run.metrics)) or 'nothing'})"
        )
    checks: list[Check] = []
    if rule.min is not None:
        ok = cand >= rule.min
        checks.append(Check(f"{m} ≥ {rule.min:g}", m, _status(ok), f"{cand:.4f}"))
    if rule.max is not None:
        ok = cand <= rule.max
        checks.append(Check(f"{m} ≤ {rule.max:g}", m, _status(ok), f"{cand:.4f}"))
    if not rule.against_production:
        return checks
    gib = rule.greater_is_better
    if gib is None:
        gib = METRICS[m].greater_is_better
    prod = _value(m, production, production_run) if production is not None else None
    for name, threshold, relative, strict in _production_bounds(rule):
        if production is None or prod is None:
            why = "no production model" if production is None else "production run lacks it"
            checks.append(Check(name, m, "skipped", why))
            continue
        delta = (cand - prod) if gib else (prod - cand)
        if relative:
            delta = delta / abs(prod) if prod != 0 else (np.inf if delta > 0 else 0.0)
        ok = delta > threshold if strict else delta >= threshold
        unit = " relative" if relative else ""
        detail = f"{cand:.4f} vs {prod:.4f} (change{unit} {delta:+.4f}, bound {threshold:+g})"
        checks.append(Check(name, m, _status(ok), detail))
    return checks


def _production_bounds(rule: Rule) -> list[tuple[str, float, bool, bool]]:
    """(check name, bound on the directional change, relative?, strict?) per production rule."""
    m = rule.metric
    tol = rule.tolerance
    bounds: list[tuple[str, float, bool, bool]] = []
    if rule.must == "not_worse_than_production":
        bounds.append((f"{m} not worse than production (tolerance {tol:g})", -tol, False, False))
    elif rule.must == "better_than_production":
        bounds.append((f"{m} better than production (by > {tol:g})", tol, False, True))
    if rule.min_absolute_change is not None:
        change = rule.min_absolute_change
        bounds.append((f"{m} change ≥ {change:+g}", change, False, False))
    if rule.min_relative_change is not None:
        change = rule.min_relative_change
        bounds.append((f"{m} relative change ≥ {change:+g}", change, True, False))
    return bounds


def _significance_check(sig: BootstrapResult, require_improvement: bool) -> Check:
    interval = (
        f"Δ {sig.difference:+.4f}, {sig.confidence:.0%} CI "
        f"[{sig.ci_low:+.4f}, {sig.ci_high:+.4f}], p(not better) {sig.p_not_better:.3f}"
    )
    if require_improvement:
        return Check(
            f"{sig.metric} significantly better",
            sig.metric,
            _status(sig.significantly_better),
            interval,
        )
    return Check(
        f"{sig.metric} not significantly worse",
        sig.metric,
        _status(not sig.significantly_worse),
        interval,
    )


def _status(ok: bool) -> str:
    return PASS if ok else FAIL


def feature_change_lines(change: dict[str, list[str]] | None) -> list[str]:
    if not change:
        return []
    parts = []
    if change.get("added"):
        parts.append("adds " + ", ".join(md.code(c) for c in change["added"]))
    if change.get("removed"):
        parts.append("drops " + ", ".join(md.code(c) for c in change["removed"]))
    return [
        "",
        f"Feature set changed: the candidate {' and '.join(parts)}; each model was scored "
        "with the columns it was trained on.",
    ]


def markdown(result: ComparisonResult) -> str:
    """A short table for PR comments and job summaries."""
    icon = {PASS: "✅", FAIL: "❌", NO_BASELINE: "🆕", "skipped": "➖"}
    prod = result.production
    c = md.cell
    lines = [
        f"### {icon[result.verdict]} {md.code(result.model)}: verdict **{result.verdict}**",
        "",
        f"Both models scored on {md.code(result.evaluation['data'])} "
        f"({result.evaluation['rows']} rows, sha256 "
        f"{md.code(str(result.evaluation['sha256'])[:12])}){_recorded(result)}.",
        *feature_change_lines(result.evaluation.get("feature_change")),
        "",
        f"| metric | candidate (run {c(md.code(result.candidate.run_id))}) | "
        + (f"production (v{c(md.text(prod.version))}) | Δ |" if prod else "production |"),
        "|---|---|---|" + ("---|" if prod else ""),
    ]
    for metric, value in result.candidate.metrics.items():
        name = c(md.text(metric))
        if prod:
            p = prod.metrics[metric]
            lines.append(f"| {name} | {value:.4f} | {p:.4f} | {value - p:+.4f} |")
        else:
            lines.append(f"| {name} | {value:.4f} | — |")
    if result.checks:
        lines += ["", "| check | result | detail |", "|---|---|---|"]
        lines += [
            f"| {c(md.text(ch.name))} | {icon[ch.status]} {ch.status} | {c(md.text(ch.detail))} |"
            for ch in result.checks
        ]
    return "\n".join(lines) + "\n"
