"""package: a registered version → ONNX (checked for parity), profiled, in a Docker build context.

Order matters for "nothing partial": every check runs before the registry is written to,
artifacts go up before tags, and the completion tag goes last.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mlops_ci.config import Config
from mlops_ci.errors import GateFailed, InputError
from mlops_ci.evaldata import load_evaluation
from mlops_ci.features import FeatureSchema, model_frame
from mlops_ci.integrity import verify_digest
from mlops_ci.lineage import sha256_file
from mlops_ci.onnxmodel import OnnxModel
from mlops_ci.packaging import convert
from mlops_ci.packaging.context import ContextSpec, write_context
from mlops_ci.packaging.frameworks import distributions
from mlops_ci.packaging.image import ImageResult, build_image, image_tag
from mlops_ci.packaging.profile import Probe, Profile, machine, measure, recommend
from mlops_ci.records import mlops_dir, read_json, write_json_atomic
from mlops_ci.registry import TAG_MODEL_SHA256, ModelRegistry, resolve_version

RECORD = "package.json"
ONNX_FILE = "model.onnx"
TAG_PREFIX = "mlops.package."


@dataclass(frozen=True)
class PackageResult:
    name: str
    version: str
    run_id: str
    format: str  # onnx | sklearn
    note: str | None  # why the native model is packaged, when it is
    parity: convert.Parity | None  # the ONNX graph against the native model (None: native)
    profile: Profile
    context: str
    model_sha256: str  # digest of the packaged model files
    onnx_sha256: str | None
    image: ImageResult
    created_at: float
    served_parity: convert.Parity | None = None  # the packaged files, fed as serve feeds them


def package(
    config: Config, registry: ModelRegistry, version_ref: str, build: bool = True
) -> PackageResult:
    name = config.model.name
    version = resolve_version(registry, name, version_ref)
    run_id = version.run_id or ""
    data = load_evaluation(config)
    with tempfile.TemporaryDirectory(prefix="mlops-package-") as tmp:
        work = Path(tmp)
        native_dir = registry.download_model(version.source, work / "native")
        recorded = version.tags.get(TAG_MODEL_SHA256)
        if recorded:  # versions registered by mlops-ci carry it; refuse an altered model
            verify_digest(native_dir, recorded, f"{name} v{version.version} model files")
        native = registry.load_model(str(native_dir))
        features = model_frame(native, data.features, data.path, f"{name} v{version.version}'s")
        native_pickle = work / "native.joblib"
        _dump(native, native_pickle)
        native_out = convert.native_outputs(native, features)
        native_size = sum(p.stat().st_size for p in native_dir.rglob("*") if p.is_file())

        schema = FeatureSchema.of_frame(features)
        onnx_scorer = None
        parity, note, onnx_sha, layout = None, None, None, convert.MATRIX
        converted = _try_onnx(config, native, native_out, features)
        if isinstance(converted, tuple):
            converted_onnx, parity, onnx_scorer = converted
            layout = converted_onnx.layout
            model_files = work / "onnx"
            model_files.mkdir()
            (model_files / ONNX_FILE).write_bytes(converted_onnx.onnx)
            onnx_sha = sha256_file(model_files / ONNX_FILE)
            fmt = "onnx"
        else:
            note = converted
            model_files, fmt = native_dir, "sklearn"

        nullable = convert.missing_ok(
            schema,
            features,
            lambda rows: convert.native_outputs(native, rows),
            onnx_scorer,
            tolerance(config),
        )
        schema = schema.with_nullable(nullable)
        profile = _profile(
            config, native, native_pickle, native_size, features, model_files, fmt, layout
        )
        tags = version.tags
        spec = ContextSpec(
            name=name,
            version=version.version,
            run_id=run_id,
            format=fmt,
            base_image=config.package.base_image,
            port=config.package.port,
            revision=tags.get("mlops.git.commit"),
            source=tags.get("mlops.git.repository"),
            features=schema.names,
            schema=schema,
            layout=layout,
            classes=convert.class_labels(native),
            frameworks=distributions(native),
        )
        folder = mlops_dir(config.root) / "package" / f"{name}-{version.version}"
        lock = (
            registry.read_artifact_text(run_id, "lineage/environment/requirements.lock")
            if run_id
            else None
        )
        context, model_sha = write_context(folder, spec, model_files, lock)
        served = _served_parity(context, features, native_out, tolerance(config))

    _record_in_registry(
        registry,
        name,
        version.version,
        run_id,
        context,
        Recorded(fmt, note, parity, served, profile, model_sha, onnx_sha),
    )
    tag = image_tag(config, name, version.version)
    image = (
        build_image(context, tag, config.package.push)
        if build
        else ImageResult(tag, "skipped", "--no-build")
    )
    result = PackageResult(
        name,
        version.version,
        run_id,
        fmt,
        note,
        parity,
        profile,
        str(context),
        model_sha,
        onnx_sha,
        image,
        time.time(),
        served,
    )
    write_json_atomic(mlops_dir(config.root) / RECORD, asdict(result))
    return result


def load_package_record(config: Config) -> dict[str, Any] | None:
    record = read_json(mlops_dir(config.root) / RECORD)
    return record if isinstance(record, dict) else None


def _dump(model: Any, path: Path) -> None:
    import joblib

    joblib.dump(model, path)


def _try_onnx(
    config: Config, native: Any, native_out: convert.Outputs, features: Any
) -> tuple[convert.Converted, convert.Parity, Any] | str:
    """The ONNX model (with its parity and scorer), or why the native model is packaged
    instead: ``package.onnx: false``, or under ``auto`` a refused conversion or failed
    parity (``true`` raises those)."""
    mode = config.package
    if isinstance(native, OnnxModel):
        if not mode.converts:
            raise InputError(
                "mlops.yaml: package.onnx: false does not apply to model.flavor onnx: the "
                "model already is ONNX",
                hint="set package.onnx: auto (the default) or true",
            )
        return _converted(config, native, native_out, features)
    if not mode.converts:
        return "package.onnx is false: the native model is served as it is"
    try:
        return _converted(config, native, native_out, features)
    except (convert.ConversionRefused, GateFailed) as err:
        if mode.onnx_required:
            raise
        why = str(err).removeprefix("ONNX ")
        return f"ONNX: not used — {why}; serving the native model (package.onnx: auto)"


def _converted(
    config: Config, native: Any, native_out: convert.Outputs, features: Any
) -> tuple[convert.Converted, convert.Parity, Any]:
    """The ONNX model, its parity with the native one (refused when it fails), and a function
    scoring DataFrames through it (for the missing-value probe)."""
    opts = config.package.profile
    converted = convert.convert_sklearn(native, features, config.package.target_opset)
    sess = convert.session(converted.onnx, opts.intra_op_threads, opts.graph_optimization_level)
    schema = FeatureSchema.of_frame(features)

    def outputs(rows: Any) -> convert.Outputs:
        return convert.onnx_outputs(sess, convert.frame_feeds(converted.layout, schema, rows))

    parity = convert.check_parity(
        native_out,
        convert.onnx_outputs(sess, convert.frame_feeds(converted.layout, schema, features)),
        tolerance(config),
    )
    if not parity.passed:
        raise GateFailed(
            _parity_message(parity, features.index),
            hint="if these are float32 rounding, raise package.parity_tolerance, "
            "package.parity_rtol or package.parity_max_row_share; set "
            "package.onnx: false to serve the native model",
        )
    return converted, parity, outputs


def tolerance(config: Config) -> convert.Tolerance:
    pkg = config.package
    return convert.Tolerance.for_task(
        config.model.task, pkg.parity_tolerance, pkg.parity_rtol, pkg.parity_max_row_share
    )


def _profile(
    config: Config,
    native: Any,
    native_pickle: Path,
    native_size: int,
    features: Any,
    model_files: Path,
    fmt: str,
    layout: str,
) -> Profile:
    opts = config.package.profile
    base = features.reset_index(drop=True)
    schema = FeatureSchema.of_frame(base)
    biggest = max(opts.batch_sizes)

    def frame(n: int) -> Any:  # n rows cycled from the evaluation data
        return base.iloc[np.arange(n) % len(base)].reset_index(drop=True)

    native_predict = getattr(native, "predict_proba", native.predict)
    native_prof = measure(
        "sklearn",
        native_predict,
        frame,
        opts.single_row_runs,
        opts.batch_sizes,
        Probe(
            "native", native_pickle, _batch_file(native_pickle.parent / "native", frame(biggest))
        ),
        native_size,
    )
    options = {
        "intra_op_threads": opts.intra_op_threads,
        "graph_optimization_level": opts.graph_optimization_level,
    }
    if fmt != "onnx":
        return Profile(native_prof, None, {}, recommend(native_prof), machine())
    onnx_path = model_files / ONNX_FILE
    sess = convert.session(str(onnx_path), opts.intra_op_threads, opts.graph_optimization_level)

    def onnx_predict(feeds: Any) -> Any:
        return sess.run(None, feeds)

    def feeds(n: int) -> Any:
        return convert.frame_feeds(layout, schema, frame(n))

    onnx_prof = measure(
        "onnxruntime",
        onnx_predict,
        feeds,
        opts.single_row_runs,
        opts.batch_sizes,
        Probe("onnx", onnx_path, _batch_file(native_pickle.parent / "onnx", feeds(biggest))),
        onnx_path.stat().st_size,
    )
    return Profile(onnx_prof, native_prof, options, recommend(onnx_prof), machine())


def _batch_file(stem: Path, batch: Any) -> Path:
    """The batch the memory probe scores (a DataFrame for the native model, feeds for ONNX)."""
    import pickle

    path = stem.with_suffix(".batch.pickle")
    path.write_bytes(pickle.dumps(batch, protocol=pickle.HIGHEST_PROTOCOL))
    return path


def _parity_message(parity: convert.Parity, index: Any) -> str:
    tol = parity.tolerance
    rows = "; ".join(
        f"row {index[i]}: native {_shown(n)}, onnx {_shown(o)} (|Δ| {d:.3g})"
        for i, d, n, o in parity.worst_rows[:3]
    )
    agreement = (
        "" if parity.label_agreement is None else f", labels agree on {parity.label_agreement:.2%}"
    )
    return (
        f"ONNX parity failed: {parity.differing_rows} of {parity.rows} rows differ beyond "
        f"|native - onnx| <= {tol.atol:g} + {tol.rtol:g}·|native| (package.parity_tolerance, "
        f"package.parity_rtol), {parity.allowed_rows} allowed (package.parity_max_row_share "
        f"{tol.max_row_share:g}); max |Δ| {parity.max_abs_diff:.3g}{agreement}; worst: {rows}"
    )


def _shown(value: Any) -> str:
    return f"{value:.6g}" if isinstance(value, float) else repr(value)


@dataclass(frozen=True)
class Recorded:
    """What package writes on the version (tags) besides the artifacts."""

    format: str
    note: str | None
    parity: convert.Parity | None
    served: convert.Parity
    profile: Profile
    model_sha: str
    onnx_sha: str | None


def _served_parity(
    context: Path, features: Any, native_out: convert.Outputs, tol: convert.Tolerance
) -> convert.Parity:
    """The packaged files loaded as `serve` loads them and fed the evaluation rows as the
    request parsers hand them on (missing values included): their answers against the
    native model's. Failing it is a defect of the package, never of the data."""
    from mlops_ci.features import table_of_frame
    from mlops_ci.serve.model import LoadedModel, read_spec

    model = LoadedModel(read_spec(context))
    said = model.predict(table_of_frame(model.schema, features))
    parity = convert.check_parity(native_out, convert.Outputs(said.labels, said.scores), tol)
    if not parity.passed:
        raise GateFailed(
            "the packaged model does not answer like the native model: "
            + _parity_message(parity, features.index).removeprefix("ONNX parity failed: "),
            hint="this is a defect of mlops-ci's contract; please report it with the model",
        )
    return parity


def _record_in_registry(
    registry: ModelRegistry,
    name: str,
    version: str,
    run_id: str,
    context: Path,
    packed: Recorded,
) -> None:
    """Artifacts first, then tags, the completion tag last: a crash leaves it visibly unfinished."""
    fmt, parity, profile = packed.format, packed.parity, packed.profile
    model_sha, onnx_sha = packed.model_sha, packed.onnx_sha
    if run_id:
        registry.log_artifacts(run_id, context / "model", f"package/v{version}")
        serving = profile.serving
        registry.log_metrics(
            run_id,
            {
                "latency_p50_ms": serving.p50_ms,
                "latency_p95_ms": serving.p95_ms,
                "latency_p99_ms": serving.p99_ms,
                "peak_rss_mb": serving.peak_rss_mb,
            },
        )
    serving, rec = profile.serving, profile.recommendation
    tags = {
        "format": fmt,
        "sha256": model_sha,
        "latency_p95_ms": f"{serving.p95_ms:.4f}",
        "throughput_rows_per_s": ";".join(f"{b}:{r:.0f}" for b, r in serving.rows_per_s.items()),
        "peak_rss_mb": f"{serving.peak_rss_mb:.1f}",
        "size_bytes": str(serving.size_bytes),
        "recommended.cpu": rec.cpu_request,
        "recommended.memory": rec.memory_request,
        "session_options": ";".join(f"{k}={v}" for k, v in profile.session_options.items()),
    }
    if packed.note:
        tags["note"] = packed.note[:5000]
    tags["served_parity.max_abs_diff"] = f"{packed.served.max_abs_diff:.3g}"
    tags["served_parity.differing_rows"] = f"{packed.served.differing_rows}/{packed.served.rows}"
    if onnx_sha:
        tags["onnx_sha256"] = onnx_sha
        tags["onnx_artifact"] = f"runs:/{run_id}/package/v{version}/{ONNX_FILE}"
    if parity is not None:
        tags["parity.max_abs_diff"] = f"{parity.max_abs_diff:.3g}"
        tags["parity.differing_rows"] = f"{parity.differing_rows}/{parity.rows}"
        tags["parity.tolerance"] = f"atol={parity.tolerance.atol:g};rtol={parity.tolerance.rtol:g}"
        if parity.label_agreement is not None:
            tags["parity.label_agreement"] = f"{parity.label_agreement:.6f}"
    speedup = profile.speedup_single_row()
    if speedup is not None:
        tags["speedup_single_row"] = f"{speedup:.2f}"
    registry.set_version_tags(name, version, {TAG_PREFIX + k: v for k, v in tags.items()})
    registry.set_version_tags(name, version, {TAG_PREFIX + "complete": "true"})
