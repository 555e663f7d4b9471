"""What a model is served with, decided once for `package` and `compare`: ONNX where the
conversion is exact (parity on the evaluation rows), the native model where it is not, and
each engine's callables for the profiler (single rows and batches cycled from those rows).

A native model a training command wrote is never loaded here: it is the model runner's
(``mlops_ci.runner``) ``RemoteModel``, converted, timed and scored beside the model in the
runner's child, its memory measured in a fresh child the caller passes in. Only a user's ONNX
graph (``OnnxModel``: data, not code) runs in this process.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mlops_ci.config.types import Config
from mlops_ci.errors import GateFailed, InputError
from mlops_ci.model.features import FeatureSchema
from mlops_ci.model.onnxmodel import OnnxModel
from mlops_ci.packaging import convert, sessions
from mlops_ci.packaging.profile import (
    NATIVE,
    ONNX,
    NativeProbe,
    Probe,
    Profile,
    feeds_file,
    machine,
    measure,
    recommend,
)

ONNX_FILE = "model.onnx"


def try_onnx(
    config: Config, native: Any, native_out: convert.Outputs, features: Any
) -> tuple[convert.Converted, convert.Parity, Any] | str:
    """The ONNX model (with its parity and scorer), or why the native model is packaged
    instead: ``package.onnx: false``, or under ``auto`` a refused conversion, a converted
    graph onnxruntime cannot load or run here, or failed parity (``true`` raises those)."""
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
    except (convert.ConversionRefused, convert.OnnxFailed, GateFailed) as err:
        if mode.onnx_required:
            raise
        why = str(err).removeprefix("ONNX ")
        return f"ONNX: not used — {why}; serving the native model (package.onnx: auto)"


def _converted(
    config: Config, native: Any, native_out: convert.Outputs, features: Any
) -> tuple[convert.Converted, convert.Parity, Any]:
    """The ONNX model, its parity with the native one (refused when it fails), and a function
    scoring DataFrames through it (for the missing-value probe). The graph must load and run
    here (``OnnxFailed`` else) with package's session options and with serve's."""
    opts = config.package.profile
    to_onnx = getattr(native, "to_onnx", None)
    if callable(to_onnx):  # a model in the model runner: skl2onnx runs in its child
        converted = convert.Converted(*to_onnx(features, config.package.target_opset))
    else:  # a user's ONNX graph (data): given mlops-ci's names here
        converted = convert.convert_sklearn(native, features, config.package.target_opset)
    schema = FeatureSchema.of_frame(features)
    sess, said = _runs(
        converted, schema, features, opts.intra_op_threads, opts.graph_optimization_level
    )

    def outputs(rows: Any) -> convert.Outputs:
        return convert.onnx_outputs(sess, convert.frame_feeds(converted.layout, schema, rows))

    parity = convert.check_parity(native_out, said, tolerance(config))
    if not parity.passed:
        raise GateFailed(
            parity_message(parity, features.index),
            hint="if these are float32 rounding, raise package.parity_tolerance, "
            "package.parity_rtol or package.parity_max_row_share; set "
            "package.onnx: false to serve the native model",
        )
    return converted, parity, outputs


def _runs(
    converted: convert.Converted, schema: FeatureSchema, features: Any, threads: int, level: str
) -> tuple[Any, convert.Outputs]:
    """A session of the converted graph and its outputs on ``features``, once it has loaded
    and run here on every row and on one row alone, at ``level`` and at serve's level
    (``all``); else ``OnnxFailed`` saying what failed (an operator onnxruntime cannot set up,
    such as a text normaliser's locale missing here, or a shape it refuses)."""
    found: tuple[Any, convert.Outputs] | None = None
    for each in dict.fromkeys((level, "all")):
        try:
            sess = sessions.session(converted.onnx, threads, each, quiet=True)
        except convert.OnnxFailed as err:
            raise _failed(
                "load", str(err).removeprefix("the ONNX model cannot be loaded: ")
            ) from None
        try:
            said = convert.onnx_outputs(
                sess, convert.frame_feeds(converted.layout, schema, features)
            )
            one = convert.frame_feeds(converted.layout, schema, features.head(1))
            convert.onnx_outputs(sess, one)
        except InputError:
            raise
        except Exception as err:  # onnxruntime's own failure on these inputs
            raise _failed("run", convert.runtime_reason(err)) from None
        found = found or (sess, said)
    assert found is not None
    return found


def _failed(what: str, why: str) -> convert.OnnxFailed:
    return convert.OnnxFailed(
        f"onnxruntime cannot {what} the converted model here: {why}",
        hint="set package.onnx: auto (the default) or false to package the native model",
    )


def tolerance(config: Config) -> convert.Tolerance:
    pkg = config.package
    return convert.Tolerance.for_task(
        config.model.task, pkg.parity_tolerance, pkg.parity_rtol, pkg.parity_max_row_share
    )


@dataclass(frozen=True)
class Engine:
    """One model as the profiler drives it: ``predict`` takes what ``rows(n)`` makes (n
    evaluation rows, cycled) or ``row(i)`` makes (the i-th evaluation row alone).
    ``timed(single_row_runs, batch_sizes)``, when set, measures latency and throughput
    beside the model (the model runner's child), so the profile does not count the pipe."""

    name: str  # onnxruntime | sklearn
    predict: Callable[[Any], Any]
    rows: Callable[[int], Any]
    row: Callable[[int], Any]
    probe: Probe
    size_bytes: int
    timed: Callable[[int, tuple[int, ...]], dict[str, Any]] | None = None
    provider: str = ""  # an ONNX engine's execution provider, as it ran (providers.Ran)


def native_engine(
    native: Any,
    features: Any,
    work: Path,
    size_bytes: int,
    probe_rows: int = 1000,
    *,
    folder: Path,
    measured_by: NativeProbe,
) -> Engine:
    """The native model on the evaluation rows. A model in the model runner (it has
    ``timings``) is timed in the runner's child, and its memory probe is a fresh runner's child
    (``measured_by``) loading ``folder``, the native model's files, and scoring ``probe_rows``
    rows; nothing of it is written or loaded here. A user's ONNX graph (``OnnxModel``, data)
    runs here; its probe is the ONNX probe of its own graph, with its feeds under ``work``."""
    base = features.reset_index(drop=True)

    def frame(n: int) -> Any:  # n rows cycled from the evaluation data
        return base.iloc[np.arange(n) % len(base)].reset_index(drop=True)

    def row(i: int) -> Any:
        return base.iloc[[i % len(base)]].reset_index(drop=True)

    predict = getattr(native, "predict_proba", native.predict)
    if isinstance(native, OnnxModel):
        work.mkdir(parents=True, exist_ok=True)
        graph = work / "native.onnx"
        graph.write_bytes(native.data)
        probe = Probe(ONNX, graph, feeds_file(work / "native", native._feeds(frame(probe_rows))))
    else:
        probe = Probe(NATIVE, folder, rows=frame(probe_rows), measured_by=measured_by)
    timings = getattr(native, "timings", None)
    if not callable(timings):
        return Engine("sklearn", predict, frame, row, probe, size_bytes)

    def timed(single_row_runs: int, batch_sizes: tuple[int, ...]) -> dict[str, Any]:
        return dict(timings(base, single_row_runs, batch_sizes))

    return Engine("sklearn", predict, frame, row, probe, size_bytes, timed)


def onnx_engine(
    onnx_path: Path,
    layout: str,
    features: Any,
    config: Config,
    work: Path,
    probe_rows: int = 1000,
) -> Engine:
    """The ONNX model with the session options serving uses, fed as serving feeds it; the
    memory probe's batch under ``work`` (never beside the model: that folder is uploaded)."""
    opts = config.package.profile
    base = features.reset_index(drop=True)
    schema = FeatureSchema.of_frame(base)
    sess, ran = sessions.open_onnx(
        str(onnx_path), opts.intra_op_threads, opts.graph_optimization_level,
        config.package.providers,
    )  # fmt: skip

    def predict(feeds: Any) -> Any:
        return sess.run(None, feeds)

    def feeds(n: int) -> Any:
        return convert.frame_feeds(layout, schema, base.iloc[np.arange(n) % len(base)])

    def row(i: int) -> Any:
        return convert.frame_feeds(layout, schema, base.iloc[[i % len(base)]])

    work.mkdir(parents=True, exist_ok=True)
    probe = Probe(ONNX, onnx_path, feeds_file(work / "onnx", feeds(probe_rows)))
    size = onnx_path.stat().st_size
    return Engine("onnxruntime", predict, feeds, row, probe, size, provider=ran.describe())


def profile(config: Config, native: Engine, onnx: Engine | None) -> Profile:
    """package's profile: each engine timed on single rows and on package.profile.batch_sizes;
    the ONNX one (when served) first, the native one beside it for the speed-up."""
    opts = config.package.profile

    def timed(engine: Engine) -> Any:
        beside = (
            None if engine.timed is None else engine.timed(opts.single_row_runs, opts.batch_sizes)
        )
        return measure(
            engine.name, engine.predict, engine.rows, opts.single_row_runs, opts.batch_sizes,
            engine.probe, engine.size_bytes, timed=beside, provider=engine.provider,
        )  # fmt: skip

    native_prof = timed(native)
    if onnx is None:
        return Profile(native_prof, None, {}, recommend(native_prof), machine())
    options = {
        "intra_op_threads": opts.intra_op_threads,
        "graph_optimization_level": opts.graph_optimization_level,
        "providers": ",".join(config.package.providers),
    }
    onnx_prof = timed(onnx)
    return Profile(onnx_prof, native_prof, options, recommend(onnx_prof), machine())


def parity_message(parity: convert.Parity, index: Any) -> str:
    tol = parity.tolerance
    rows = "; ".join(
        f"row {index[i]}: native {shown(n)}, onnx {shown(o)} (|Δ| {d:.3g})"
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


def shown(value: Any) -> str:
    return f"{value:.6g}" if isinstance(value, float) else repr(value)
