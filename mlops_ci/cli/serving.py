"""The packaging and serving verbs: package, serve, and the docker front."""

from __future__ import annotations

from pathlib import Path

import click

from mlops_ci.cli.common import (
    CONFIG_OPTION,
    ISOLATION_OPTION,
    MODEL_NAME_OPTION,
    VERSION_OPTION,
    load,
    notify,
    open_registry,
    settle_gc,
)
from mlops_ci.ui.printable import echo


@click.command()
@CONFIG_OPTION
@VERSION_OPTION
@MODEL_NAME_OPTION
@click.option("--no-build", is_flag=True, help="Write the build context only; do not call Docker.")
def package(config_path: Path | None, version: str, model: str | None, no_build: bool) -> None:
    """Convert a model version to ONNX, check parity, profile it, and containerise it.

    Both models score evaluate.data; when the converter refuses the model or more rows than
    package.parity_max_row_share differ beyond package.parity_tolerance +
    package.parity_rtol·|native|, package.onnx: auto (the default) packages the native model
    and says why, package.onnx: true fails (exit 2 / exit 1). The packaged files are then
    scored as serve scores them and held against the native model; latency,
    throughput and memory are measured with onnxruntime beside the native model; the Docker
    build context is written to .mlops/package/NAME-VERSION/ and built when a Docker engine
    is reachable. XGBoost and LightGBM convert through onnxmltools; an ONNX model
    (model.flavor onnx) is packaged as it is.
    """
    import dataclasses

    from mlops_ci.ci import emit_outputs
    from mlops_ci.steps.package import package as package_step

    config = load(config_path)
    if model and model != config.model.name:
        config = dataclasses.replace(config, model=dataclasses.replace(config.model, name=model))
    result = package_step(config, open_registry(config), version, build=not no_build)
    echo(f"packaged {result.name} v{result.version} as {result.format}")
    if result.model_runner:
        echo(f"native model runner: {result.model_runner}")
    if result.note:
        echo(f"note: {result.note}")
    if result.parity is not None:
        parity = result.parity
        agree, tol = parity.label_agreement, parity.tolerance
        echo(
            f"parity: max |native - onnx| {parity.max_abs_diff:.2e} on {parity.rows} rows, "
            f"{parity.differing_rows} beyond {tol.atol:g} + {tol.rtol:g}·|native| "
            f"({parity.allowed_rows} allowed)"
            + ("" if agree is None else f", labels agree {agree:.2%}")
        )
    if result.served_parity is not None:
        served = result.served_parity
        echo(
            f"served: the package answers like the native model on {served.rows} rows "
            f"(max |Δ| {served.max_abs_diff:.2e}, {served.differing_rows} beyond tolerance)"
        )
    for prof in (result.profile.serving, result.profile.native):
        if prof is None:
            continue
        batches = ", ".join(f"{b}: {r:,.0f}" for b, r in prof.rows_per_s.items())
        echo(
            f"{prof.engine:>12}: single row p50 {prof.p50_ms:.3f} ms, p95 {prof.p95_ms:.3f} ms, "
            f"p99 {prof.p99_ms:.3f} ms; rows/s by batch {batches}; "
            f"peak RSS {prof.peak_rss_mb:.0f} MiB; size {prof.size_bytes:,} B"
            + (f"; on {prof.provider}" if prof.provider else "")
        )
    speedup = result.profile.speedup_single_row()
    if speedup is not None:
        batch = ", ".join(f"{b}: {s:.1f}x" for b, s in result.profile.speedup_batch().items())
        echo(f"ONNX speed-up: single row {speedup:.1f}x; batch {batch}")
    rec = result.profile.recommendation
    echo(
        f"recommended: cpu {rec.cpu_request}, memory {rec.memory_request} "
        f"(limit {rec.memory_limit}) — {rec.why}"
    )
    echo(f"build context: {result.context}")
    if result.image.status == "skipped":
        echo(f"image: not built: {result.image.reason}")
    else:
        echo(f"image: {result.image.status} {result.image.tag}")
    notify(
        config,
        "model.packaged",
        f"{result.name}/{result.version}",
        {
            "model": result.name,
            "version": result.version,
            "format": result.format,
            "sha256": result.model_sha256,
            "image": result.image.tag,
            "image_status": result.image.status,
        },
    )
    emit_outputs(
        {
            "context-path": result.context,
            "image": result.image.tag,
            "image-status": result.image.status,
            "model-sha256": result.model_sha256,
        }
    )


@click.command()
@click.option(
    "--config",
    "-c",
    "config_path",
    type=click.Path(path_type=Path),
    default=None,
    help="mlops.yaml or its folder; optional with --model-dir (serve/monitor sections, registry).",
)
@click.option(
    "--model-dir",
    "model_dirs",
    multiple=True,
    metavar="DIR[=WEIGHT]",
    envvar="MLOPS_MODEL_DIR",
    help="A package folder written by `mlops-ci package` (its model/ or the context); repeat "
    "for several versions, each with an optional traffic weight.",
)
@click.option(
    "--version",
    "versions",
    multiple=True,
    metavar="N|@ALIAS[=WEIGHT]",
    help="A registered, packaged version to serve, e.g. --version @production=90 "
    "--version @candidate=10.",
)
@click.option(
    "--shadow",
    metavar="N|@ALIAS|DIR[=PERCENT]",
    default=None,
    help="A version that scores a share of requests (default 100 %) after the served version "
    "answered them, unseen by clients: its outputs go to the input log beside the "
    "primary's, for `mlops-ci quality`. E.g. --shadow @candidate=25.",
)
@MODEL_NAME_OPTION
@click.option("--host", default=None, help="Address to listen on (default: serve.host).")
@click.option(
    "--port", type=click.IntRange(1, 65535), default=None, help="Port (default: serve.port, 8080)."
)
@click.option(
    "--workers", type=click.IntRange(min=1), default=None, help="Worker processes (default: 1)."
)
@click.option(
    "--threads", type=click.IntRange(min=0), default=None, help="onnxruntime threads per worker."
)
@click.option(
    "--max-batch-size",
    type=click.IntRange(min=1),
    default=None,
    envvar="MLOPS_SERVE_MAX_BATCH_SIZE",  # config.types.BATCH_SIZE_ENV (not imported: startup)
    help="Adaptive batching: requests arriving together are scored in one model call of up "
    "to N rows, each answered with its own rows; an idle model scores a request at once. "
    "1 turns it off (default: serve.batching, off).",
)
@click.option(
    "--max-delay-ms",
    type=click.FloatRange(min=0, max=1000),
    default=None,
    envvar="MLOPS_SERVE_MAX_DELAY_MS",  # config.types.BATCH_DELAY_ENV
    help="With batching: the longest a batch waits for requests whose bodies are still "
    "arriving (default: serve.batching.max_delay_ms, 2).",
)
@click.option(
    "--collect/--no-collect",
    default=None,
    help="Log every scored row for drift detection (default: monitor.collect).",
)
@click.option(
    "--log-dir",
    type=click.Path(path_type=Path),
    default=None,
    help="Folder of the input log (default: monitor.log_dir).",
)
@click.option(
    "--state-dir",
    type=click.Path(path_type=Path),
    default=None,
    help="Folder for downloaded models and shared worker state (default: .mlops/serve).",
)
@ISOLATION_OPTION
def serve(
    config_path: Path | None,
    model_dirs: tuple[str, ...],
    versions: tuple[str, ...],
    model: str | None,
    host: str | None,
    port: int | None,
    workers: int | None,
    threads: int | None,
    max_batch_size: int | None,
    max_delay_ms: float | None,
    collect: bool | None,
    log_dir: Path | None,
    state_dir: Path | None,
    isolation: str | None,
    shadow: str | None,
) -> None:
    """Serve model versions over HTTP: KServe Open Inference Protocol v2 and /score.

    Endpoints: POST /score ({"inputs": [[...]]} or records by column), POST
    /v2/models/NAME/infer, GET /v2/health/ready, GET /metrics (Prometheus), and
    PUT /admin/traffic to change the split (Bearer token from $MLOPS_ADMIN_TOKEN). Several
    versions share the endpoint by weight; the x-model-version header pins one. A native
    (scikit-learn) model is loaded and called only in a child process, in the sandbox of
    --isolation; an ONNX graph runs on onnxruntime in the worker. --shadow adds a version
    that scores requests after they were answered (PUT/DELETE /admin/shadow change it live).
    """
    from mlops_ci.extras import require

    require("serve", "mlops-ci serve")
    settle_gc()  # a long-lived process: the collector's usual pace
    from mlops_ci.serve.command import start

    start(
        config_path,
        list(model_dirs),
        list(versions),
        model,
        {
            "host": host,
            "port": port,
            "workers": workers,
            "intra_op_threads": threads,
            "max_batch_size": max_batch_size,
            "max_delay_ms": max_delay_ms,
        },
        collect,
        log_dir,
        state_dir,
        isolation,
        shadow,
    )


@click.command()
@click.option("--model", required=True, help="The model's name (a label on the front's metrics).")
@click.option("--host", default="0.0.0.0", show_default=True, help="Address to listen on.")
@click.option(
    "--port",
    type=click.IntRange(1, 65535),
    default=8080,
    show_default=True,
    help="Port to listen on.",
)
@click.option(
    "--state-dir",
    type=click.Path(path_type=Path),
    default=Path("/var/lib/mlops-ci/front"),
    show_default=True,
    help="Where the routes are kept across restarts (a volume in a container).",
)
@click.option(
    "--token-env",
    default="MLOPS_ADMIN_TOKEN",
    show_default=True,
    help="Environment variable holding the bearer token of /admin/front.",
)
@click.option(
    "--upstream-base",
    required=True,
    help="Name of the environment's version containers without -vVERSION "
    "(mlops-ci-MODEL-ENV): the only upstreams /admin/front accepts.",
)
@click.option(
    "--upstream-port",
    type=click.IntRange(1, 65535),
    default=8080,
    show_default=True,
    help="Port the version containers listen on.",
)
def front(
    model: str,
    host: str,
    port: int,
    state_dir: Path,
    token_env: str,
    upstream_base: str,
    upstream_port: int,
) -> None:
    """The router in front of a docker environment's version containers.

    The docker deploy target runs it from the serving image on the environment's port: HAProxy
    (installed in the image) sends each request to one version's container by weight
    (x-model-version pins one), so a new version is started beside the old one, probed, given
    traffic step by step, and the old one is stopped only once drained. GET/PUT /admin/front
    (Bearer token) read and set the routes, changed in HAProxy while it runs; GET /metrics
    counts requests per version. Only the scoring and health routes are forwarded (no
    Authorization or Cookie header), and only to http://BASE-vVERSION:PORT.
    """
    from mlops_ci.extras import require

    require("serve", "mlops-ci front")
    settle_gc()  # a long-lived process: the collector's usual pace
    from mlops_ci.serve.front import run_front
    from mlops_ci.serve.frontroutes import UpstreamRule

    run_front(model, host, port, state_dir, token_env, UpstreamRule(upstream_base, upstream_port))
