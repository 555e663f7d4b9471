"""package: a registered version → ONNX (checked for parity), profiled, in a Docker build context.

Order matters for "nothing partial": every check runs before the registry is written to,
artifacts go up before tags, and the completion tag goes last.

The native model is loaded once, in the verb's model runner (``mlops_ci.runner``): its
outputs, the ONNX conversion, the parity check, the profile's timings, its class labels and
frameworks are all asked of the runner's child; its memory is measured in a fresh child.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from mlops_ci.config.types import Config
from mlops_ci.errors import GateFailed, InputError
from mlops_ci.evaluation.data import load_evaluation
from mlops_ci.model.features import FeatureSchema, model_frame, onnx_frame, schema_frame
from mlops_ci.model.integrity import verify_digest
from mlops_ci.model.onnxmodel import rows_per_call
from mlops_ci.model.tensors import Tensors
from mlops_ci.packaging import convert, runtime, tensorpack
from mlops_ci.packaging.context import ContextSpec, write_context
from mlops_ci.packaging.frameworks import distributions
from mlops_ci.packaging.image import ImageResult, build_image, image_tag
from mlops_ci.packaging.profile import NativeProbe, Profile
from mlops_ci.packaging.runtime import ONNX_FILE
from mlops_ci.provenance import sha256_file
from mlops_ci.records import JobFolder, write_json_atomic
from mlops_ci.registry import TAG_MODEL_SHA256, ModelRegistry, resolve_version
from mlops_ci.runner import ModelRunner

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
    model_runner: str | None = None  # how the native model's child was isolated, when it ran


def package(
    config: Config, registry: ModelRegistry, version_ref: str, build: bool = True
) -> PackageResult:
    name = config.model.name
    version = resolve_version(registry, name, version_ref)
    run_id = version.run_id or ""
    data = load_evaluation(config)
    isolation = config.train.isolation
    with (
        ModelRunner(isolation) as runner,
        tempfile.TemporaryDirectory(prefix="mlops-package-") as tmp,
    ):
        work = Path(tmp)
        native_dir = registry.download_model(version.source, work / "native")
        recorded = version.tags.get(TAG_MODEL_SHA256)
        if recorded:  # versions registered by mlops-ci carry it; refuse an altered model
            verify_digest(native_dir, recorded, f"{name} v{version.version} model files")
        native = registry.load_model(str(native_dir), runner)
        runner_line = runner.isolation.line if runner.started else None
        if isinstance(data.features, Tensors) or getattr(native, "tensors", None) is not None:
            packed, context = _tensor_package(config, registry, version, native, data, work)
        else:
            packed, context = _table_package(
                config, registry, version, native, data, work, native_dir, runner
            )

    packed = replace(packed, accelerator=config.package.accelerator)
    _record_in_registry(registry, name, version.version, run_id, context, packed)
    fmt, note, parity, profile = packed.format, packed.note, packed.parity, packed.profile
    model_sha, onnx_sha, served = packed.model_sha, packed.onnx_sha, packed.served
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
        runner_line,
    )
    write_json_atomic(JobFolder(config.root).package, asdict(result))
    return result


def _table_package(
    config: Config,
    registry: ModelRegistry,
    version: Any,
    native: Any,
    data: Any,
    work: Path,
    native_dir: Path,
    runner: ModelRunner,
) -> tuple[Recorded, Path]:
    """A table model: ONNX where the conversion is exact, else the native model."""
    name, isolation = config.model.name, config.train.isolation
    features = model_frame(native, data.features, data.path, f"{name} v{version.version}'s")
    native_out = convert.native_outputs(native, features)
    native_size = sum(p.stat().st_size for p in native_dir.rglob("*") if p.is_file())

    schema = FeatureSchema.of_frame(features)
    onnx_scorer = None
    parity, note, onnx_sha, layout = None, None, None, convert.MATRIX
    # ONNX takes a bool as 0/1 and a category as its text (features.onnx_frame)
    converted = runtime.try_onnx(config, native, native_out, onnx_frame(features))
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
        lambda rows: convert.native_outputs(native, schema_frame(schema, rows)),
        None if onnx_scorer is None else lambda rows: onnx_scorer(onnx_frame(rows)),
        runtime.tolerance(config),
    )
    schema = schema.with_nullable(nullable)
    if fmt == "onnx":  # the graph takes a category column as text
        schema = schema.onnx_takes()
    probe_rows = max(config.package.profile.batch_sizes)
    profile = runtime.profile(
        config,
        runtime.native_engine(
            native,
            features,
            work / "profile",
            native_size,
            probe_rows,
            folder=native_dir,
            measured_by=runner_peak_rss(isolation),
        ),
        runtime.onnx_engine(
            model_files / ONNX_FILE,
            layout,
            onnx_frame(features),
            config,
            work / "profile",
            probe_rows,
        )
        if fmt == "onnx"
        else None,
    )
    context, model_sha = _write_context(
        config, registry, version, model_files,
        format=fmt, features=schema.names, schema=schema, layout=layout,
        classes=convert.class_labels(native), frameworks=_frameworks(native),
    )  # fmt: skip
    served = _served_parity(context, features, native_out, runtime.tolerance(config), runner)
    return Recorded(fmt, note, parity, served, profile, model_sha, onnx_sha), context


def _tensor_package(
    config: Config, registry: ModelRegistry, version: Any, native: Any, data: Any, work: Path
) -> tuple[Recorded, Path]:
    """A tensor model: its own graph with mlops-ci's outputs (``packaging/tensorpack.py``)."""
    label = f"{config.model.name} v{version.version}'s"
    model, rows = tensorpack.tensor_model(native, data.features, label)
    assert model.tensors is not None
    packed = tensorpack.package_tensors(
        config, model, rows, work, max(config.package.profile.batch_sizes)
    )
    profile = runtime.profile(config, packed.engine, None)
    context, model_sha = _write_context(
        config, registry, version, packed.folder,
        format="onnx", features=model.tensors.names, schema=None, layout=packed.layout,
        classes=convert.class_labels(model), frameworks=(), tensors=model.tensors,
    )  # fmt: skip
    served = _served_tensor_parity(context, rows, packed.native)
    onnx_sha = sha256_file(packed.folder / ONNX_FILE)
    return Recorded("onnx", None, packed.parity, served, profile, model_sha, onnx_sha), context


def _write_context(
    config: Config, registry: ModelRegistry, version: Any, model_files: Path, **fields: Any
) -> tuple[Path, str]:
    """The build context of ``version`` from ``model_files``, with the lock of its run."""
    run_id = version.run_id or ""
    tags = version.tags
    spec = ContextSpec(
        name=config.model.name,
        version=version.version,
        run_id=run_id,
        base_image=config.package.base_image,
        port=config.package.port,
        revision=tags.get("mlops.git.commit"),
        source=tags.get("mlops.git.repository"),
        serve_env=tuple(config.serve.batching.env().items()) if config.serve.batching else (),
        providers=config.package.providers,
        accelerator=config.package.accelerator,
        **fields,
    )
    folder = JobFolder(config.root).package_context(config.model.name, version.version)
    lock = (
        registry.read_artifact_text(run_id, "lineage/environment/requirements.lock")
        if run_id
        else None
    )
    return write_context(folder, spec, model_files, lock)


def _served_tensor_parity(context: Path, rows: Any, native_out: convert.Outputs) -> convert.Parity:
    """The package loaded as `serve` loads it, fed the evaluation rows as the request parser
    hands them on: exactly the user's graph's answers (the same onnxruntime, the same
    arrays), else a defect of the package."""
    from mlops_ci.serve.model import LoadedModel, read_spec
    from mlops_ci.serve.payload import PayloadError

    spec = read_spec(context)
    schema = spec.tensor_schema
    assert schema is not None
    model = LoadedModel(spec)
    step = rows_per_call(rows)
    try:
        said = [model.predict(part.for_model(schema)) for part in rows.calls(step)]
    except PayloadError as err:
        raise InputError(f"{context}: the packaged model refuses evaluate.data: {err}") from None
    finally:
        model.close()
    answer = tensorpack.joined([convert.Outputs(p.labels, p.scores) for p in said])
    parity = convert.check_parity(native_out, answer, tensorpack.EXACT)
    if not parity.passed:
        raise GateFailed(
            f"the packaged model does not answer like the model on {parity.differing_rows} of "
            f"{parity.rows} rows (max |Δ| {parity.max_abs_diff:.3g})",
            hint="this is a defect of mlops-ci's contract; please report it with the model",
        )
    return parity


def runner_peak_rss(isolation: str) -> NativeProbe:
    """The memory probe of a native model (``profile.Probe``): a fresh model runner's child,
    so no other model and none of mlops-ci's own memory counts, loads the model's folder,
    scores the rows once (``model_outputs``) and says its peak RSS (VmHWM), in MiB."""

    def probe(folder: Path, rows: Any) -> float:
        with ModelRunner(isolation) as fresh:
            model = fresh.load_folder(folder)
            model.model_outputs(rows)
            return model.peak_rss_mb()

    return probe


def _frameworks(native: Any) -> tuple[str, ...]:
    """Distributions the native model needs to be served: what the runner's child said of it
    (``RemoteModel.distributions``), else asked of the model here (a user's ONNX graph)."""
    said = getattr(native, "distributions", None)
    if isinstance(said, tuple):
        return tuple(str(d) for d in said)
    return distributions(native)


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
    accelerator: str = "cpu"  # package.accelerator: a cuda image's pods ask for a GPU


def _served_parity(
    context: Path,
    features: Any,
    native_out: convert.Outputs,
    tol: convert.Tolerance,
    runner: ModelRunner,
) -> convert.Parity:
    """The packaged files loaded as `serve` loads them (``LoadedModel``: a packaged native
    model in ``runner``'s child, never here) and fed the evaluation rows as the request
    parsers hand them on (missing values included): their answers against the native
    model's. Failing it is a defect of the package, never of the data."""
    from mlops_ci.model.features import table_of_frame
    from mlops_ci.serve.model import LoadedModel, read_spec
    from mlops_ci.serve.payload import PayloadError

    spec = read_spec(context)
    try:
        said = LoadedModel(spec, runner=runner).predict(table_of_frame(spec.schema, features))
    except PayloadError as err:  # the model refused the rows it scored natively: named, exit 2
        raise InputError(f"{context}: the packaged model refuses evaluate.data: {err}") from None
    answer = convert.Outputs(said.labels, said.scores)
    parity = convert.check_parity(native_out, answer, tol)
    if not parity.passed:
        raise GateFailed(
            "the packaged model does not answer like the native model: "
            + runtime.parity_message(parity, features.index).removeprefix("ONNX parity failed: "),
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
        "accelerator": packed.accelerator,
    }
    if serving.provider:  # what ran, not only what was asked (onnxruntime falls back)
        tags["provider"] = serving.provider.split(" ", 1)[0]
        tags["provider.detail"] = serving.provider[:5000]
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
