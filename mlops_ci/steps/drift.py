"""drift: does what the model receives still look like its reference data?

Per feature, of the kind the input contract gives it (``model/features.py``): for numbers the
population stability index (every row), a Kolmogorov–Smirnov test on bounded samples, missing
values and range; for categories and bools their counts, PSI and a chi-squared test; for free
text (a text column of many different values) its lengths, hashed words and empty share
(``monitor/text.py``), never thousands of one-off categories. A feature's ``note`` says how it
was compared. Both sides are streamed in chunks. A JSON line that is not a JSON object (one torn
by a full disk) is skipped, counted and named in the result, not the end of its file.

Prediction drift, when the current data is the serve input log: its logged predictions against
the same model's predictions on the reference rows — the production version (alias
``registry.production_alias``), loaded only in the model runner, or the predictions its train
recorded when the reference is evaluate.data (``evaluation/predictions.py``). Without a
registry or a production version it is left out, and ``prediction`` says why; it is never
compared with the reference's target. Writes .mlops/drift.json and drift.md.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy.typing as npt
import pandas as pd

from mlops_ci.config.types import Config, DriftConfig
from mlops_ci.errors import InputError, MlopsError
from mlops_ci.evaluation import predictions as evalcache
from mlops_ci.evaluation.data import EvaluationData, load_evaluation
from mlops_ci.model.features import (
    BOOL,
    CATEGORY,
    NUMBER,
    Feature,
    FeatureSchema,
    fitted_features,
    read_kinds,
    typed_frame,
)
from mlops_ci.monitor.drift import CategoricalFeature, NumericFeature, NumericSide, Spill
from mlops_ci.monitor.lines import SkippedLines
from mlops_ci.monitor.sources import PREDICTION, chunks
from mlops_ci.monitor.text import TEST as TEXT_TEST
from mlops_ci.monitor.text import TextFeature, is_free_text
from mlops_ci.records import JobFolder, write_json_atomic, write_text_atomic
from mlops_ci.registry import EVALUATION_ARTIFACT, ModelRegistry, VersionRecord
from mlops_ci.report import charts
from mlops_ci.report import markdown as md
from mlops_ci.runner import ModelRunner

DRIFTED, STABLE, TOO_FEW = "drift", "no-drift", "too-few-rows"
CONFIGURED = "configured"  # drift(registry=...): the registry mlops.yaml names, if it exists


@dataclass(frozen=True)
class FeatureDrift:
    name: str
    kind: str  # numeric | categorical | text | prediction
    psi: float
    test: str  # ks | chi2 | length+tokens
    p_value: float | None
    drifted: bool
    reference_rows: int
    current_rows: int
    reference_missing: float  # share
    current_missing: float
    reference_range: tuple[float, float] | None  # a text's: of its length in characters
    current_range: tuple[float, float] | None
    outside_range: float | None  # share of current rows outside the reference's range
    note: str = ""  # how it was compared, when more than its test says (text, prediction)


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
    model: str = ""  # model.name: the report shows only its own model's drift
    prediction: str | None = None  # how prediction drift was compared, or why it was left out

    @property
    def drifted(self) -> list[FeatureDrift]:
        """Drifted input features (prediction drift is reported, not counted)."""
        return [f for f in self.features if f.drifted and f.kind != "prediction"]

    @property
    def current_rows(self) -> int:
        return max((f.current_rows for f in self.features), default=0)


def drift(
    config: Config,
    reference: str | None = None,
    current: str | None = None,
    registry: ModelRegistry | str | None = CONFIGURED,
) -> DriftResult:
    """Drift of ``current`` against ``reference``. ``registry``: where the production version
    is found for prediction drift (``CONFIGURED``: mlops.yaml's, when it exists; None: none)."""
    with ModelRunner(config.train.isolation) as runner:
        return _drift(config, reference, current, registry, runner)


def _drift(
    config: Config,
    reference: str | None,
    current: str | None,
    registry: ModelRegistry | str | None,
    runner: ModelRunner,
) -> DriftResult:
    settings = config.monitor.drift
    ref_path = config.resolve(reference or settings.reference)
    cur_path = config.resolve(current or settings.current or config.monitor.log_dir)
    started = time.perf_counter()
    skipped = SkippedLines()  # counted on the reference's first full pass and on the current
    scorer: _Scorer | None = None
    said: str | None = None
    if _has_predictions(cur_path, settings.chunk_rows):
        scorer, said = _production(config, registry, runner, ref_path)
    features = _plan(config, ref_path, settings, scorer.fitted if scorer else {})
    target = None if scorer is None else _prediction_feature(config, len(features))
    target = _read_reference(ref_path, settings, features, skipped, target, scorer)
    if scorer is not None and target is None:  # the model could not score the reference
        said = scorer.failed
    seen_prediction = False
    for chunk in chunks(cur_path, settings.chunk_rows, skipped):
        for f in features:
            f.add_current(_column(chunk, f.name, cur_path))
        if target is not None and PREDICTION in chunk.columns:
            seen_prediction = True
            target.add_current(chunk[PREDICTION])
    results = [_result(f, settings) for f in features]
    if target is not None and seen_prediction:
        results.append(_result(target, settings, kind="prediction", note=said or ""))
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
        config.model.name,
        said,
    )
    _write(config, result)
    return result


def _prediction_feature(config: Config, taken: int) -> Any:
    """The accumulator of predictions: numbers for a regressor, labels for a classifier."""
    s = config.monitor.drift
    if config.model.task == "regression":
        return NumericFeature("prediction", s.bins, s.sample_size, s.seed + 2 * taken)
    return CategoricalFeature("prediction")


def _read_reference(
    path: Path,
    settings: DriftConfig,
    features: list[Any],
    skipped: SkippedLines,
    target: Any,
    scorer: _Scorer | None,
) -> Any:
    """Both passes over the reference: ranges, samples, counts, the model's predictions
    (``target``), then the histograms on the bins. The prediction accumulator, or None when
    the model could not score the reference (``scorer.failed`` says why)."""
    with tempfile.TemporaryFile(prefix="mlops-drift-") as file:
        spill = Spill(file)  # numeric predictions of pass 1, for pass 2's histogram
        offset = 0
        for chunk in chunks(path, settings.chunk_rows, skipped):  # pass 1
            for f in features:
                f.scan_reference(_column(chunk, f.name, path))
            values = scorer.on(chunk, offset) if scorer and target is not None else None
            if values is None:
                target = None
            else:
                target.scan_reference(pd.Series(values))
                if isinstance(target, NumericFeature):
                    spill.add(values)
            offset += len(chunk)
        binned = [f for f in features if isinstance(f, (NumericFeature, TextFeature))]
        for f in [*binned, *([target] if isinstance(target, NumericFeature) else [])]:
            f.freeze()
        if binned:
            for chunk in chunks(path, settings.chunk_rows):  # pass 2: histograms on the bins
                for f in binned:
                    f.count_reference(chunk[f.name])
        if isinstance(target, NumericFeature):
            for values in spill.read():
                target.count_reference(pd.Series(values))
    return target


def _has_predictions(path: Path, chunk_rows: int) -> bool:
    """Whether the current data holds logged predictions (the serve input log)."""
    first = next(chunks(path, min(chunk_rows, 1000), SkippedLines()), None)
    return first is not None and PREDICTION in first.columns


def _plan(
    config: Config, ref_path: Path, settings: DriftConfig, fitted: dict[str, Feature]
) -> list[Any]:
    """One accumulator per feature, of the kind the input contract gives it: what the model
    records of a column (``fitted``), else evaluate.dtypes, else the reference's first chunk
    as ``model/features.py`` types a frame; a text column of many values is free text."""
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
    declared = {n: f.kind for n, f in read_kinds(first[names], config.evaluate.dtypes).items()}
    features: list[Any] = []
    for i, name in enumerate(names):
        kind = fitted[name].kind if name in fitted else declared.get(name) or _kind(first, name)
        seed = settings.seed + 2 * i
        if kind == NUMBER:
            features.append(NumericFeature(name, settings.bins, settings.sample_size, seed))
        elif is_free_text(kind, first[name]):
            features.append(TextFeature(name, settings.bins, settings.sample_size, seed))
        else:
            feature = CategoricalFeature(name)
            feature.boolean = True if kind == BOOL else None  # None: the first chunk says
            features.append(feature)
    return features


def _kind(first: pd.DataFrame, name: str) -> str:
    """The contract's kind of a column from the reference's dtypes; a column the contract
    refuses as a feature (a date) is counted as categories, as before there was a contract."""
    try:
        return FeatureSchema.of_frame(first[[name]]).features[0].kind
    except InputError:
        return CATEGORY


def _column(chunk: pd.DataFrame, name: str, path: Path) -> pd.Series:
    if name not in chunk.columns:
        raise InputError(f"{path}: column '{name}' is missing (the reference has it)")
    return chunk[name]


def _result(f: Any, s: DriftConfig, kind: str | None = None, note: str = "") -> FeatureDrift:
    test, p_value = f.test()
    value = f.psi()
    by_psi = value >= s.psi_threshold
    by_test = p_value is not None and p_value < s.p_value
    drifted = {"psi": by_psi, "test": by_test, "both": by_psi and by_test}[s.test]
    ranged = f.length if isinstance(f, TextFeature) else f  # a text's range: of its lengths
    ref, cur = (
        (ranged.reference, ranged.current) if isinstance(ranged, NumericFeature) else 2 * [None]
    )
    if isinstance(f, NumericFeature):
        rows, gaps = [f.reference.rows, f.current.rows], [f.reference.missing, f.current.missing]
    else:
        rows, gaps = f.rows, f.missing
    return FeatureDrift(
        f.name,
        kind or _KINDS.get(type(f), "categorical"),
        value,
        test,
        p_value,
        drifted,
        rows[0],
        rows[1],
        gaps[0] / max(rows[0], 1),
        gaps[1] / max(rows[1], 1),
        _range(ref),
        _range(cur),
        None if cur is None else cur.outside / max(rows[1], 1),
        f.note() if isinstance(f, TextFeature) else note,
    )


_KINDS: dict[type, str] = {NumericFeature: "numeric", TextFeature: "text"}


def _range(side: NumericSide | None) -> tuple[float, float] | None:
    return (side.minimum, side.maximum) if side and side.rows > side.missing else None


# --- the production model's predictions on the reference ---------------------------------


@dataclass
class _Scorer:
    """The production version's predictions on the reference, chunk by chunk: recorded by its
    train (``recorded``) or from the model loaded in the model runner (``model``)."""

    config: Config
    where: str
    label: str
    model: Any = None
    recorded: npt.NDArray[Any] | None = None
    failed: str = ""  # why scoring stopped, once it did

    @property
    def fitted(self) -> dict[str, Feature]:
        """What the model records of its columns (bools, categories), for the contract."""
        return fitted_features(self.model) if self.model is not None else {}

    def on(self, chunk: pd.DataFrame, offset: int) -> npt.NDArray[Any] | None:
        if self.recorded is not None:
            return self.recorded[offset : offset + len(chunk)]
        spec = self.config.evaluate
        features = chunk.drop(columns=[c for c in (spec.target, PREDICTION) if c in chunk])
        try:
            typed = typed_frame(features, read_kinds(features, spec.dtypes), self.where)
            rows = EvaluationData(self.where, "", typed, None)
            return evalcache.predict(self.model, rows, self.label)
        except InputError as err:
            self.failed = f"prediction drift left out: {err}"
            return None


def _production(
    config: Config, registry: ModelRegistry | str | None, runner: ModelRunner, ref_path: Path
) -> tuple[_Scorer | None, str]:
    """The production version's scorer and how prediction drift is compared; or None and why
    it is left out (no registry, no production version, a model that cannot be loaded)."""
    alias = config.registry.production_alias
    found, why = _registry(config, registry)
    if found is None:
        return None, f"prediction drift left out: {why}"
    try:
        version = found.get_version_by_alias(config.model.name, alias)
    except MlopsError as err:
        return None, f"prediction drift left out: the registry did not answer: {err}"
    if version is None:
        return None, (
            f"prediction drift left out: no version of {config.model.name} has the alias "
            f"'{alias}' in {found.describe()}"
        )
    label = f"production ({config.model.name} v{version.version})"
    against = f"logged predictions against {label}'s predictions on the reference rows"
    recorded = _recorded(config, found, version, ref_path)
    if recorded is not None:
        return _Scorer(config, str(ref_path), label, recorded=recorded), (
            f"{against} (as its train recorded them)"
        )
    try:
        model = found.load_model(version.source, runner)
    except MlopsError as err:
        return None, f"prediction drift left out: {label} could not be loaded: {err}"
    return _Scorer(config, str(ref_path), label, model=model), f"{against} (scored now)"


def _registry(
    config: Config, registry: ModelRegistry | str | None
) -> tuple[ModelRegistry | None, str]:
    """The registry to ask, or None and why there is none. mlops.yaml's embedded store is
    opened only when it exists (drift does not create an empty one)."""
    if registry is None:
        return None, "no registry"
    if not isinstance(registry, str):
        return registry, ""
    from mlops_ci.registry import open_registry
    from mlops_ci.registry.tracking import resolve_tracking_uri

    uri, source = resolve_tracking_uri(config)
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).is_file():
        return None, f"no registry: {uri.removeprefix('sqlite:///')} ({source}) does not exist"
    try:
        return open_registry(config), ""
    except MlopsError as err:
        return None, f"the registry cannot be opened: {err}"


def _recorded(
    config: Config, registry: ModelRegistry, version: VersionRecord, ref_path: Path
) -> npt.NDArray[Any] | None:
    """The predictions the version's train recorded, when the reference is evaluate.data and
    they are of exactly its rows (as compare's ``_scored`` takes them)."""
    if ref_path != config.resolve(config.evaluate.data) or not version.run_id:
        return None
    try:
        run = registry.get_run(version.run_id)
        if run.model_uri != version.source:
            return None  # the run's record is of another model than the version's
        text = registry.read_artifact_text(run.run_id, EVALUATION_ARTIFACT)
        found = evalcache.cached(text, load_evaluation(config)) if text else None
    except MlopsError:
        return None  # scored instead, where the model can be loaded
    return None if found is None else found.predictions


# --- the report ------------------------------------------------------------------------


def markdown(result: DriftResult | dict[str, Any], top: int = 8, level: str = "##") -> str:
    """The drift report: of a result, or of its record (``.mlops/drift.json``, which the job's
    report shows under a heading of ``level``)."""
    r = asdict(result) if isinstance(result, DriftResult) else result
    features = r["features"]
    inputs = [f for f in features if f["kind"] != "prediction"]
    drifted = [f for f in inputs if f["drifted"]]
    icon = {DRIFTED: "🌊", STABLE: "✅"}.get(r["verdict"], "⚠️")
    worst = sorted(features, key=lambda f: -f["psi"])
    s = r["settings"]
    rows = (worst[0]["reference_rows"], worst[0]["current_rows"]) if worst else (0, 0)
    lines = [
        f"{level} {icon} Data drift: **{md.text(r['verdict'])}** — {len(drifted)} of "
        f"{len(inputs)} features drifted",
        "",
        f"Reference {md.code(r['reference'])} ({rows[0]:,} rows) vs current "
        f"{md.code(r['current'])} ({rows[1]:,} rows); flagged by "
        f"{md.text(s['test'])} (PSI ≥ {s['psi_threshold']:g}, p < {s['p_value']:g}).",
        "",
        *([f"⚠️ {md.text(r['skipped_summary'])}", ""] if r.get("skipped_summary") else []),
        "| feature | PSI | test | p-value | missing ref → cur | outside ref range | drift |",
        "|---|---:|---|---:|---|---:|---|",
    ]
    for f in worst:
        p_value = "n/a" if f["p_value"] is None else f"{f['p_value']:.3g}"
        outside = "" if f["outside_range"] is None else f"{f['outside_range']:.1%}"
        lines.append(
            f"| {md.cell(md.text(f['name']))}{_KIND_MARK.get(f['kind'], '')} | {f['psi']:.3f} | "
            f"{md.cell(md.text(f['test']))} | {p_value} | {f['reference_missing']:.1%} → "
            f"{f['current_missing']:.1%} | {outside} | {'🌊 yes' if f['drifted'] else 'no'} |"
        )
    lines += _notes(r)
    shown = worst[:top]
    if shown:
        lines += [
            "",
            *charts.xychart(
                "Population stability index, worst features first",
                [f["name"] for f in shown],
                [round(f["psi"], 3) for f in shown],
                [float(s["psi_threshold"]) for _ in shown],
                "PSI",
            ),
        ]
    return "\n".join(lines) + "\n"


_KIND_MARK = {"prediction": " (prediction)", "text": " (text)"}


def _notes(r: dict[str, Any]) -> list[str]:
    """How the text columns were compared, and the prediction drift line."""
    lines = [
        f"- {md.code(f['name'])}: {md.text(f.get('note') or TEXT_TEST)}"
        for f in r["features"]
        if f["kind"] == "text"
    ]
    predicted = [f for f in r["features"] if f["kind"] == "prediction"]
    said = r.get("prediction")
    if predicted:
        f = predicted[0]
        p_value = "n/a" if f["p_value"] is None else f"{f['p_value']:.3g}"
        lines.append(
            f"- Prediction drift: PSI {f['psi']:.3f} ({md.text(f['test'])} p {p_value}), "
            f"{'🌊 drifted' if f['drifted'] else 'no drift'} (reported, not counted): "
            + md.text(said or "logged predictions against the reference's")
        )
    elif said:
        lines.append(f"- Prediction drift: {md.text(said)}")
    return ["", *lines] if lines else []


def _write(config: Config, result: DriftResult) -> None:
    job = JobFolder(config.root)
    write_json_atomic(job.drift, asdict(result))
    write_text_atomic(job.drift_md, markdown(result))
