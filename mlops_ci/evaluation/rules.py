"""The gate's rules applied to two models' scores: absolute bounds, the rules against
production in the metric's better direction (as MLflow's ``MetricThreshold``), the rules per
slice, and the paired bootstrap's verdict. Each gives checks with one sign per gap."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from mlops_ci.config.types import Rule
from mlops_ci.errors import InputError
from mlops_ci.evaluation import delta
from mlops_ci.evaluation.bootstrap import BootstrapResult
from mlops_ci.evaluation.comparison import FAIL, PASS, Check, ModelScore
from mlops_ci.evaluation.slices import SliceScore
from mlops_ci.metrics import COST_METRICS, METRICS


class RunRecord(Protocol):
    """The training run as the rules read it: its id and its logged metrics (the registry's
    ``RunRecord`` has both; this package does not import the registry adapter)."""

    @property
    def run_id(self) -> str: ...

    @property
    def metrics(self) -> Mapping[str, float]: ...


def _value(metric: str, score: ModelScore | None, run: RunRecord | None) -> float | None:
    if score is not None and metric in score.metrics:
        return score.metrics[metric]
    if score is not None and metric in score.cost:
        return score.cost[metric]
    if run is not None and metric in run.metrics:
        return run.metrics[metric]
    return None


def rule_checks(
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
    gib = direction(m, rule)
    prod = _value(m, production, production_run) if production is not None else None
    for bound in _production_bounds(rule, gib):
        if production is None or prod is None:
            why = "no production model" if production is None else "production run lacks it"
            checks.append(Check(bound.name, m, "skipped", why))
            continue
        if bound.relative:
            raw = delta.relative(cand, prod)
            change = raw if not bound.directional else (raw if gib else -raw)
            shown = delta.relative_gap(cand, prod, gib)
        else:
            change = (cand - prod) if gib else (prod - cand)
            shown = delta.gap(cand - prod, gib)
        ok = change > bound.threshold if bound.strict else change >= bound.threshold
        if bound.upper:
            ok = change <= bound.threshold
        detail = f"{delta.number(cand)} vs {delta.number(prod)}: {shown}; {bound.need}"
        checks.append(Check(bound.name, m, _status(ok), detail))
    return checks


def direction(metric: str, rule: Rule | None = None) -> bool:
    """Whether more is better: the rule's own say, else the known metric's (scores, costs)."""
    if rule is not None and rule.greater_is_better is not None:
        return rule.greater_is_better
    if metric in METRICS:
        return METRICS[metric].greater_is_better
    return COST_METRICS[metric].greater_is_better if metric in COST_METRICS else True


@dataclass(frozen=True)
class _Bound:
    """One comparison with production: the change (candidate − production, turned so that
    positive is better when ``directional``; relative to production when ``relative``) must be
    above ``threshold`` (``strict``: strictly), or at most it when ``upper``."""

    name: str
    threshold: float
    relative: bool
    need: str  # what the rule asks, in the words of the gap
    strict: bool = False
    directional: bool = True
    upper: bool = False


def _production_bounds(rule: Rule, gib: bool) -> list[_Bound]:
    m = rule.metric
    tol = rule.tolerance
    bounds: list[_Bound] = []
    if rule.must == "not_worse_than_production":
        need = f"allowed: worse by at most {tol:g}" if tol else "allowed: no worse"
        bounds.append(
            _Bound(f"{m} not worse than production (tolerance {tol:g})", -tol, False, need)
        )
    elif rule.must == "better_than_production":
        need = f"needed: better by more than {tol:g}"
        bounds.append(_Bound(f"{m} better than production (by > {tol:g})", tol, False, need, True))
    if rule.min_absolute_change is not None:
        c = rule.min_absolute_change
        need = (
            f"needed: better by at least {c:g}" if c >= 0 else f"allowed: worse by at most {-c:g}"
        )
        bounds.append(_Bound(f"{m} change ≥ {c:+g}", c, False, need))
    if rule.min_relative_change is not None:
        c = rule.min_relative_change
        size = delta.percent(abs(c)).lstrip("+")
        need = (
            f"needed: better by at least {size}" if c >= 0 else f"allowed: worse by at most {size}"
        )
        bounds.append(_Bound(f"{m} relative change ≥ {c:+g}", c, True, need))
    if rule.max_increase is not None:
        x = rule.max_increase
        size = delta.percent(x).lstrip("+")
        bounds.append(
            _Bound(f"{m} increase ≤ {size}", x, True, f"allowed: an increase of at most {size}",
                   directional=False, upper=True)
        )  # fmt: skip
    if rule.max_decrease is not None:
        x = rule.max_decrease
        size = delta.percent(x).lstrip("+")
        bounds.append(
            _Bound(f"{m} decrease ≤ {size}", -x, True, f"allowed: a decrease of at most {size}",
                   directional=False)
        )  # fmt: skip
    return bounds


def _need(better: bool, size: str) -> str:
    return f"needed: better by at least {size}" if better else f"allowed: worse by at most {size}"


def slice_checks(
    i: int, rule: Rule, run: RunRecord, slices: list[SliceScore], min_rows: int
) -> list[Check]:
    """The rule in every slice of at least ``min_rows`` rows: one check per failing slice (its
    name in the check's), else one check saying every slice holds."""
    judged = [s for s in slices if s.rows >= min_rows]
    small = len(slices) - len(judged)
    note = f"; {small} slice(s) under {min_rows} rows not judged" if small else ""
    if not judged:
        why = f"no slice has {min_rows} rows (gate.min_slice_rows)"
        return [Check(f"{rule.metric} in every slice", rule.metric, "skipped", why)]
    results: dict[str, list[tuple[SliceScore, Check]]] = {}
    for s in judged:
        cand = ModelScore("candidate", None, None, s.candidate)
        prod = ModelScore("production", None, None, s.production) if s.production else None
        for check in rule_checks(i, rule, run, cand, prod, None):
            results.setdefault(check.name, []).append((s, check))
    out = []
    for name, found in results.items():
        failed = [(s, c) for s, c in found if c.status == FAIL]
        if failed:
            out += [
                Check(f"{name} in slice {s.name}", rule.metric, FAIL, f"{c.detail}; {s.rows} rows")
                for s, c in failed
            ]
        elif all(c.status == "skipped" for _, c in found):
            out.append(Check(f"{name} in every slice", rule.metric, "skipped", found[0][1].detail))
        else:
            detail = f"{len(found)} slices hold{note}"
            out.append(Check(f"{name} in every slice", rule.metric, PASS, detail))
    return out


def significance_check(sig: BootstrapResult, require_improvement: bool) -> Check:
    gib = METRICS[sig.metric].greater_is_better
    interval = (
        f"{delta.gap(sig.difference, gib)}; {sig.confidence:.0%} CI of Δ "
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
