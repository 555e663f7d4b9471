"""drift: does what the model receives still look like its reference data?

Per feature: the population stability index (every row), a two-sample test on bounded samples
(Kolmogorov–Smirnov for numbers, chi-squared for categories), missing-value and range changes;
and prediction drift when the current data is the serve input log (its predictions against the
reference's target). Both sides are streamed in chunks. A JSON line that is not a JSON object
(one torn by a full disk) is skipped, counted and named in the result, not the end of its file.
Writes .mlops/drift.json and drift.md.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from mlops_ci.config.types import Config, DriftConfig
from mlops_ci.errors import InputError
from mlops_ci.monitor.drift import CategoricalFeature, NumericFeature
from mlops_ci.monitor.lines import SkippedLines
from mlops_ci.monitor.sources import PREDICTION, chunks
from mlops_ci.records import JobFolder, write_json_atomic, write_text_atomic
from mlops_ci.report import charts
from mlops_ci.report import markdown as md

DRIFTED, STABLE, TOO_FEW = "drift", "no-drift", "too-few-rows"


@dataclass(frozen=True)
class FeatureDrift:
    name: str
    kind: str  # numeric | categorical | prediction
    psi: float
    test: str  # ks | chi2
    p_value: float | None
    drifted: bool
    reference_rows: int
    current_rows: int
    reference_missing: float  # share
    current_missing: float
    reference_range: tuple[float, float] | None
    current_range: tuple[float, float] | None
    outside_range: float | None  # share of current rows outside the reference's range


@dataclass(frozen=True)
class DriftResult:
    verdict: str  # drift | no-drift
    reference: str
    current: str
    features: list[FeatureDrift]
    drifted_share: float
    settings: dict[str, Any]
    seconds: float
    skipped_lines: int = 0  # JSON lines that are not objects, on either side
    skipped_at: list[str] = field(default_factory=list)  # FILE:LINE of the first few
    skipped_summary: str | None = None  # the line the report shows

    @property
    def drifted(self) -> list[FeatureDrift]:
        """Drifted input features (prediction drift is reported, not counted)."""
        return [f for f in self.features if f.drifted and f.kind != "prediction"]

    @property
    def current_rows(self) -> int:
        return max((f.current_rows for f in self.features), default=0)


def drift(config: Config, reference: str | None = None, current: str | None = None) -> DriftResult:
    settings = config.monitor.drift
    ref_path = config.resolve(reference or settings.reference)
    cur_text = current or settings.current or config.monitor.log_dir
    cur_path = config.resolve(cur_text)
    started = time.perf_counter()
    skipped = SkippedLines()  # counted on the reference's first full pass and on the current
    features, target = _plan(config, ref_path, settings)
    for chunk in chunks(ref_path, settings.chunk_rows, skipped):  # pass 1: ranges, samples, ...
        for f in features:
            f.scan_reference(_column(chunk, f.name, ref_path))
        if target is not None and config.evaluate.target in chunk.columns:
            target.scan_reference(chunk[config.evaluate.target])
    numeric = [f for f in features if isinstance(f, NumericFeature)]
    for f in numeric:
        f.freeze()
    if numeric:
        for chunk in chunks(ref_path, settings.chunk_rows):  # pass 2: histograms on the bins
            for f in numeric:
                f.count_reference(chunk[f.name])
    seen_prediction = False
    for chunk in chunks(cur_path, settings.chunk_rows, skipped):
        for f in features:
            f.add_current(_column(chunk, f.name, cur_path))
        if target is not None and PREDICTION in chunk.columns:
            seen_prediction = True
            target.add_current(chunk[PREDICTION])
    results = [_result(f, settings) for f in features]
    if target is not None and seen_prediction:
        results.append(_result(target, settings, kind="prediction"))
    judged = [r for r in results if r.kind != "prediction"]
    share = sum(r.drifted for r in judged) / max(len(judged), 1)
    drifted = any(r.drifted for r in judged) and share > settings.max_drifted_share
    verdict = DRIFTED if drifted else STABLE
    if max((r.current_rows for r in judged), default=0) < settings.min_rows:
        verdict = TOO_FEW
    result = DriftResult(
        verdict,
        str(ref_path),
        str(cur_path),
        results,
        share,
        asdict(settings),
        time.perf_counter() - started,
        skipped.count,
        skipped.places,
        skipped.summary(),
    )
    _write(config, result)
    return result


def _plan(
    config: Config, ref_path: Path, settings: DriftConfig
) -> tuple[list[Any], CategoricalFeature | None]:
    """One accumulator per feature, typed by the reference's first chunk."""
    first = next(chunks(ref_path, 1000), None)
    if first is None or first.empty:
        raise InputError(f"{ref_path}: the reference data has no rows")
    names = list(settings.features) or [
        c for c in first.columns if c not in (config.evaluate.target, PREDICTION)
    ]
    missing = [n for n in names if n not in first.columns]
    if missing:
        raise InputError(
            f"mlops.yaml: monitor.drift.features: {', '.join(missing)} not in {ref_path.name}"
        )
    features: list[Any] = []
    for i, name in enumerate(names):
        if pd.api.types.is_numeric_dtype(first[name]) and not pd.api.types.is_bool_dtype(
            first[name]
        ):
            features.append(
                NumericFeature(name, settings.bins, settings.sample_size, settings.seed + 2 * i)
            )
        else:
            features.append(CategoricalFeature(name))
    target = CategoricalFeature("prediction") if config.evaluate.target in first.columns else None
    return features, target


def _column(chunk: pd.DataFrame, name: str, path: Path) -> pd.Series:
    if name not in chunk.columns:
        raise InputError(f"{path}: column '{name}' is missing (the reference has it)")
    return chunk[name]


def _result(f: Any, s: DriftConfig, kind: str | None = None) -> FeatureDrift:
    test, p_value = f.test()
    value = f.psi()
    by_psi = value >= s.psi_threshold
    by_test = p_value is not None and p_value < s.p_value
    drifted = {"psi": by_psi, "test": by_test, "both": by_psi and by_test}[s.test]
    if isinstance(f, NumericFeature):
        ref, cur = f.reference, f.current
        return FeatureDrift(
            f.name,
            "numeric",
            value,
            test,
            p_value,
            drifted,
            ref.rows,
            cur.rows,
            ref.missing / max(ref.rows, 1),
            cur.missing / max(cur.rows, 1),
            (ref.minimum, ref.maximum) if ref.rows > ref.missing else None,
            (cur.minimum, cur.maximum) if cur.rows > cur.missing else None,
            cur.outside / max(cur.rows, 1),
        )
    rows, missing = f.rows, f.missing
    return FeatureDrift(
        f.name,
        kind or "categorical",
        value,
        test,
        p_value,
        drifted,
        rows[0],
        rows[1],
        missing[0] / max(rows[0], 1),
        missing[1] / max(rows[1], 1),
        None,
        None,
        None,
    )


# --- the report ------------------------------------------------------------------------


def markdown(result: DriftResult, top: int = 8) -> str:
    icon = {DRIFTED: "🌊", STABLE: "✅"}.get(result.verdict, "⚠️")
    worst = sorted(result.features, key=lambda f: -f.psi)
    s = result.settings
    lines = [
        f"## {icon} Data drift: **{result.verdict}** — {len(result.drifted)} of "
        f"{len([f for f in result.features if f.kind != 'prediction'])} features drifted",
        "",
        f"Reference {md.code(result.reference)} ({worst[0].reference_rows if worst else 0:,} rows) "
        f"vs current {md.code(result.current)} ({worst[0].current_rows if worst else 0:,} rows); "
        "flagged by "
        f"{s['test']} (PSI ≥ {s['psi_threshold']:g}, p < {s['p_value']:g}).",
        "",
        *([f"⚠️ {md.text(result.skipped_summary)}", ""] if result.skipped_summary else []),
        "| feature | PSI | test | p-value | missing ref → cur | outside ref range | drift |",
        "|---|---:|---|---:|---|---:|---|",
    ]
    for f in worst:
        p_value = "n/a" if f.p_value is None else f"{f.p_value:.3g}"
        outside = "" if f.outside_range is None else f"{f.outside_range:.1%}"
        lines.append(
            f"| {md.cell(md.text(f.name))}{' (prediction)' if f.kind == 'prediction' else ''} | "
            f"{f.psi:.3f} | "
            f"{f.test} | {p_value} | {f.reference_missing:.1%} → {f.current_missing:.1%} | "
            f"{outside} | {'🌊 yes' if f.drifted else 'no'} |"
        )
    shown = worst[:top]
    if shown:
        lines += [
            "",
            *charts.xychart(
                "Population stability index, worst features first",
                [f.name for f in shown],
                [round(f.psi, 3) for f in shown],
                [float(s["psi_threshold"]) for _ in shown],
                "PSI",
            ),
        ]
    return "\n".join(lines) + "\n"


def _write(config: Config, result: DriftResult) -> None:
    job = JobFolder(config.root)
    write_json_atomic(job.drift, asdict(result))
    write_text_atomic(job.drift_md, markdown(result))
