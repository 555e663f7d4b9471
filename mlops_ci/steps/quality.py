"""quality: how the served versions do on real requests, from labels that arrive later.

The labels are joined to the serve input log by (request_id, row) (``monitor/quality.py`` says
how, and what it counts rather than guesses). Each version's metrics are computed by the same
code as compare's (``metrics.Encoded.of`` and ``score``, evaluate.metrics; a classifier judged
by the labels it answered, a regressor by its value), over the whole window and per period of
``every``. Where a shadow version scored the same labelled rows as the primary, the two are
paired on those rows and judged as compare judges a candidate offline: the gate's rules (per
slice of evaluate.slices too), then the paired bootstrap of gate.primary_metric — pass or fail,
or inconclusive on fewer than monitor.quality.min_rows pairs. Production's own live metrics are
held to the gate's min/max rules: breaking one is ``degraded`` (the verb exits 1 and sends
model.quality.degraded). Writes .mlops/quality.json and quality.md.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from types import MappingProxyType
from typing import Any

import numpy as np
import numpy.typing as npt

from mlops_ci.config.types import Config, Rule
from mlops_ci.errors import InputError
from mlops_ci.evaluation.bootstrap import paired_bootstrap
from mlops_ci.evaluation.comparison import FAIL, PASS, Check, ModelScore
from mlops_ci.evaluation.rules import rule_checks, significance_check, slice_checks
from mlops_ci.evaluation.slices import SliceScore, cut, score_slices
from mlops_ci.metrics import Encoded, score
from mlops_ci.monitor import quality as live
from mlops_ci.monitor.labels import read_labels
from mlops_ci.monitor.lines import SkippedLines
from mlops_ci.records import JobFolder, write_json_atomic, write_text_atomic
from mlops_ci.report.quality import markdown

INCONCLUSIVE = "inconclusive"
HEALTHY, DEGRADED, TOO_FEW = "healthy", "degraded", "too-few-rows"


class _LiveRun:
    """The rules' run record: live rows have no training run, so no logged metric."""

    run_id = "live rows"
    metrics: Mapping[str, float] = MappingProxyType({})


@dataclass(frozen=True)
class QualityResult:
    record: dict[str, Any]  # what quality.json holds

    @property
    def degraded(self) -> bool:
        return bool(self.record["production_health"]) and (
            self.record["production_health"]["verdict"] == DEGRADED
        )

    @property
    def verdict(self) -> str:
        """The live comparison's verdict, "none" without a shadow version."""
        comparison = self.record["comparison"]
        return str(comparison["verdict"]) if comparison else "none"


def quality(
    config: Config,
    labels: str | None = None,
    current: str | None = None,
    every: str | None = None,
    production: str | None = None,
    candidate: str | None = None,
    production_alias: Callable[[], str | None] | None = None,
) -> QualityResult:
    """Join, score and judge (see the module). ``production_alias`` says which version the
    registry's production alias names; it is asked only when several versions answered as
    the primary and neither ``production`` nor the pairs decide."""
    started = time.perf_counter()
    spec = config.monitor.quality
    labels_text = labels or spec.labels
    if not labels_text:
        raise InputError(
            "no labels to join: give --labels FILE",
            hint="or set monitor.quality.labels in mlops.yaml (CSV, Parquet or JSON Lines)",
        )
    seconds = (
        live.period_seconds(every)
        if every
        else live.period_seconds(spec.every, "mlops.yaml: monitor.quality.every")
    )
    labels_path = config.resolve(labels_text)
    log_path = config.resolve(current or config.monitor.log_dir)
    task = config.model.task
    found = read_labels(labels_path, config.evaluate.target, task)
    skipped = SkippedLines()
    unread: Counter[str] = Counter()  # rows of requests no label names: counted, not kept
    wanted = {request for request, _ in found.labels}
    logged = live.read_log(log_path, task, config.evaluate.slices, skipped, wanted, unread)
    joined = live.join(logged, found)
    joined.counts["unlabelled_rows"] += unread["unlabelled_rows"]
    metrics = config.evaluate.metrics
    versions = {
        v: {
            "rows": len(a.keys),
            "primary_rows": a.primary,
            "shadow_rows": a.shadow,
            "metrics": _metrics(task, metrics, a.truth, a.predicted),
        }
        for v, a in sorted(joined.versions.items())
    }
    notes = _notes(task, joined)
    cand = _candidate(joined, candidate)
    prod = production
    if prod is None and cand is not None:
        prod = _most(_primaries_paired_with(joined, cand), production_alias)
    if prod is None:
        prod = _most(Counter(joined.primary.values()), production_alias)
    mismatch = [n for n in notes if prod is not None and n.startswith(f"version {prod}:")]
    if mismatch:  # judged, it would read as a degraded model and start a retraining
        raise InputError(
            f"{labels_path}: {mismatch[0]} (production, v{prod})",
            hint=f"write the labels of {config.evaluate.target} as the model answers them",
        )
    comparison = _compare(config, joined, prod, cand, notes) if cand and prod else None
    record: dict[str, Any] = {
        "model": config.model.name,
        "task": task,
        "labels": str(labels_path),
        "current": str(log_path),
        "primary_metric": config.gate.primary_metric,
        "every": every or spec.every,
        "min_rows": spec.min_rows,
        "versions": versions,
        "comparison": comparison,
        "production_health": _health(config, prod, versions) if prod else None,
        "periods": _periods(task, metrics, joined, seconds),
        **joined.counts,
        "labels_read": len(found),
        "skipped_lines": skipped.count,
        "skipped_summary": skipped.summary(),
        "notes": notes,
        "seconds": round(time.perf_counter() - started, 3),
        "created_at": time.time(),
    }
    job = JobFolder(config.root)
    write_json_atomic(job.quality, record)
    write_text_atomic(job.quality_md, markdown(record))
    return QualityResult(record)


def _metrics(task: str, names: tuple[str, ...], truth: list[Any], predicted: list[Any]) -> Any:
    """evaluate.metrics of one version's rows, as compare computes them."""
    if not truth:
        return {}
    enc, (pred,) = Encoded.of(task, _values(truth), _values(predicted))
    return {m: score(m, enc, pred) for m in names}


def _values(values: list[Any]) -> npt.NDArray[Any]:
    """Labels or answers as they came, each its own type: one array type for the window would
    turn 1 into "1.0" beside a 1.0 (or True into "1"), so a class would depend on its
    neighbours (compare reads one column of one type; here the rows come from many requests)."""
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out


def _notes(task: str, joined: live.Joined) -> list[str]:
    """What would make the figures mean nothing, said: a version whose labels and answers
    share no value (the labels "1", the answers 1.0) scores 0 for what is a format mismatch."""
    if task == "regression":
        return []
    out = []
    for version, a in sorted(joined.versions.items()):
        truth = {str(v) for v in _values(a.truth).astype(str)}
        said = {str(v) for v in _values(a.predicted).astype(str)}
        if truth and said and not truth & said:
            out.append(
                f"version {version}: the labels ({', '.join(sorted(truth)[:3])}) and its "
                f"answers ({', '.join(sorted(said)[:3])}) share no value; check the label format"
            )
    return out


def _candidate(joined: live.Joined, given: str | None) -> str | None:
    """The shadow version to judge: the one given, else the one with the most labelled rows."""
    shadows = {v: a.shadow for v, a in joined.versions.items() if a.shadow}
    if given is not None:
        if given not in shadows:
            listed = ", ".join(sorted(shadows)) or "none"
            raise InputError(
                f"--candidate: version '{given}' scored no labelled row as a shadow "
                f"(shadow versions with labelled rows: {listed})"
            )
        return given
    return max(sorted(shadows), key=shadows.__getitem__) if shadows else None


def _primaries_paired_with(joined: live.Joined, candidate: str) -> Counter[str]:
    return Counter(
        joined.primary[key]
        for key, shadows in joined.shadows.items()
        if candidate in shadows and key in joined.primary
    )


def _most(counted: Counter[str], alias: Callable[[], str | None] | None) -> str | None:
    """The one version, or (several) the registry's production version among them, else the
    version with the most rows."""
    if len(counted) <= 1:
        return next(iter(counted), None)
    named = alias() if alias is not None else None
    if named is not None and named in counted:
        return named
    return max(sorted(counted), key=counted.__getitem__)


def _live_rules(config: Config) -> tuple[list[tuple[int, Rule]], list[Check]]:
    """The gate's rules live rows can judge (on evaluate.metrics), and a skipped check for each
    other (a metric the training run logged, a cost)."""
    judged, skipped = [], []
    for i, rule in enumerate(config.gate.rules):
        if rule.metric in config.evaluate.metrics:
            judged.append((i, rule))
        else:
            why = "not measured on live rows (only evaluate.metrics are)"
            skipped.append(Check(f"{rule.metric} (gate.rules.{i})", rule.metric, "skipped", why))
    return judged, skipped


def _compare(
    config: Config, joined: live.Joined, production: str, candidate: str, notes: list[str]
) -> dict[str, Any]:
    """Shadow against primary on the labelled rows both scored: compare's rules, slices and
    paired bootstrap on them."""
    prod_at, cand_at = live.paired(joined, production, candidate)
    rows = len(prod_at)
    out: dict[str, Any] = {"production": production, "candidate": candidate, "rows": rows}
    min_rows = config.monitor.quality.min_rows
    if rows < 2:
        why = f"{rows} labelled row(s) scored by both versions"
        return out | {"verdict": INCONCLUSIVE, "reason": why, "checks": [], "metrics": {}}
    p, c = joined.versions[production], joined.versions[candidate]
    truth = _values([p.truth[i] for i in prod_at])
    enc, (cand, prod) = Encoded.of(
        config.model.task,
        truth,
        _values([c.predicted[i] for i in cand_at]),
        _values([p.predicted[i] for i in prod_at]),
    )
    names = config.evaluate.metrics
    cand_score = ModelScore("candidate", None, candidate, {m: score(m, enc, cand) for m in names})
    prod_score = ModelScore("production", None, production, {m: score(m, enc, prod) for m in names})
    gate = config.gate
    sig = paired_bootstrap(
        gate.primary_metric, enc, cand, prod, gate.bootstrap_samples, gate.significance, gate.seed
    )
    slices = _slices(config, p, prod_at, enc, cand, prod, notes)
    judged, checks = _live_rules(config)
    run = _LiveRun()
    for i, rule in judged:
        checks += rule_checks(i, rule, run, cand_score, prod_score, None)
        if rule.slice == "all":
            checks += slice_checks(i, rule, run, slices, gate.min_slice_rows)
    checks.append(significance_check(sig, gate.require_improvement))
    failed = any(check.status == FAIL for check in checks)
    verdict = INCONCLUSIVE if rows < min_rows else (FAIL if failed else PASS)
    reason = f"{rows} paired rows, fewer than monitor.quality.min_rows ({min_rows})"
    return out | {
        "verdict": verdict,
        **({"reason": reason} if verdict == INCONCLUSIVE else {}),
        "metrics": {"production": prod_score.metrics, "candidate": cand_score.metrics},
        "checks": [asdict(check) for check in checks],
        "significance": asdict(sig),
        "slices": [asdict(s) | {"name": s.name} for s in slices],
        "min_slice_rows": gate.min_slice_rows,
    }


def _slices(
    config: Config,
    answers: live.Answers,
    at: list[int],
    enc: Encoded,
    cand: npt.NDArray[Any],
    prod: npt.NDArray[Any],
    notes: list[str],
) -> list[SliceScore]:
    """Both versions per slice of evaluate.slices, cut from the paired rows' logged inputs; a
    column the log does not hold is left out, with a note."""
    import pandas as pd

    spec = config.evaluate
    if not spec.slices:
        return []
    columns = {name: [answers.slices[i][j] for i in at] for j, name in enumerate(spec.slices)}
    absent = [name for name, values in columns.items() if all(v is None for v in values)]
    if absent:
        notes.append(f"slices: {', '.join(absent)} not among the logged inputs; not sliced by")
    frame = pd.DataFrame({n: v for n, v in columns.items() if n not in absent})
    if frame.columns.empty:
        return []
    return score_slices(cut(frame, spec.slice_bins, spec.slice_max), spec.metrics, enc, cand, prod)


def _health(config: Config, version: str, versions: dict[str, Any]) -> dict[str, Any]:
    """Production's live metrics against the gate's min/max rules."""
    found = versions.get(version, {"rows": 0, "metrics": {}})
    rows = int(found["rows"])
    checks: list[Check] = []
    if rows:
        score_now = ModelScore("production", None, version, found["metrics"])
        judged, _ = _live_rules(config)
        for i, rule in judged:
            if rule.min is not None or rule.max is not None:
                bounds = Rule(rule.metric, min=rule.min, max=rule.max)
                checks += rule_checks(i, bounds, _LiveRun(), score_now, None, None)
    min_rows = config.monitor.quality.min_rows
    if rows < min_rows:
        verdict = TOO_FEW
    else:
        verdict = DEGRADED if any(c.status == FAIL for c in checks) else HEALTHY
    return {
        "version": version,
        "verdict": verdict,
        "rows": rows,
        "metrics": found["metrics"],
        "checks": [asdict(check) for check in checks],
    }


def _periods(
    task: str, names: tuple[str, ...], joined: live.Joined, every: int
) -> list[dict[str, Any]]:
    """Each version's rows and metrics per period of ``every`` seconds, by the rows' time."""
    table: dict[int, dict[str, Any]] = {}
    for version, a in sorted(joined.versions.items()):
        for start, at in live.periods(a.ts, every).items():
            table.setdefault(start, {})[version] = {
                "rows": len(at),
                "metrics": _metrics(
                    task, names, [a.truth[i] for i in at], [a.predicted[i] for i in at]
                ),
            }
    return [
        {"start": _utc(start), "end": _utc(start + every), "versions": table[start]}
        for start in sorted(table)
    ]


def _utc(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))
