"""`mlops-ci serve`: settings from flags over mlops.yaml over the schema's defaults, then run."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

from mlops_ci.config.file import find_config
from mlops_ci.config.types import (
    Batching,
    Config,
    MonitorConfig,
    ServeConfig,
    load_config,
    monitor_config,
    serve_config,
)
from mlops_ci.errors import InputError
from mlops_ci.extras import require
from mlops_ci.records import JobFolder
from mlops_ci.serve import server
from mlops_ci.serve.inputlog import LogSettings
from mlops_ci.serve.model import ModelSpec
from mlops_ci.serve.service import ServiceSettings
from mlops_ci.serve.shadow import Shadow
from mlops_ci.ui.printable import echo


def start(
    config_path: Path | None,
    model_dirs: list[str],
    versions: list[str],
    model: str | None,
    overrides: dict[str, Any],
    collect: bool | None,
    log_dir: Path | None,
    state_dir: Path | None,
    isolation: str | None = None,
    shadow: str | None = None,
) -> None:
    shadow_ref = server.parse_weighted(shadow, "--shadow") if shadow else None
    from_registry = shadow_ref is not None and server.is_registry_ref(shadow_ref.ref)
    config = _optional_config(config_path, needed=bool(versions) or from_registry)
    serve_cfg = config.serve if config else serve_config()
    serve_cfg = dataclasses.replace(
        serve_cfg, **{k: v for k, v in overrides.items() if v is not None and k not in BATCHING}
    )
    serve_cfg = dataclasses.replace(serve_cfg, batching=batching_over(serve_cfg, overrides))
    monitor = config.monitor if config else monitor_config()
    root = config.root if config else Path.cwd()
    state = (state_dir or JobFolder(root).serve_state).resolve()
    chosen = _models(config, model, model_dirs, versions, state)
    shadowed = _shadow(config, model, shadow_ref, state) if shadow_ref else None
    settings = build_settings(
        chosen,
        serve_cfg,
        monitor,
        collect,
        log_dir or root / monitor.log_dir,
        state,
        runner_isolation(isolation, config),
        shadowed,
    )
    for spec in settings.models:
        share = settings.weights[spec.version] / sum(settings.weights.values())
        role = (
            f"shadow of {settings.shadow.percent:g} % of requests"
            if settings.shadow and settings.shadow.version == spec.version
            else f"{share:.0%} of traffic"
        )
        echo(
            f"serving {spec.name} v{spec.version} ({spec.format}, sha256 {spec.sha256[:12]}, "
            f"{role}) from {spec.folder}"
        )
    if any(spec.format != "onnx" for spec in settings.models):
        echo(f"native model runner: {checked_isolation(settings.isolation, isolation)}")
    if settings.batching:
        b = settings.batching
        echo(
            f"adaptive batching: up to {b.max_batch_size} rows per model call, waiting at most "
            f"{b.max_delay_ms:g} ms for requests still arriving (an idle model scores at once)"
        )
    if settings.input_log:
        echo(f"input log: {settings.input_log.folder}")
    elif settings.shadow:
        echo(
            "warning: --shadow without the input log (--collect, monitor.collect): the shadow's "
            "answers are counted in /metrics but kept nowhere for `mlops-ci quality`",
            err=True,
        )
    if not settings.admin_token:
        echo(f"admin endpoints off: set {serve_cfg.admin_token_env} to change the split")
    from mlops_ci.serve.connections import budget
    from mlops_ci.serve.protocol import bind

    limits = budget()  # an open-file limit too small to serve is exit 2, before listening
    sock = bind(serve_cfg.host, serve_cfg.port)  # before saying so: a taken port is exit 2
    echo(
        f"listening on http://{serve_cfg.host}:{serve_cfg.port} ({serve_cfg.workers} "
        f"worker(s), {limits.connections:,} connections each at most)"
    )
    server.run(settings, sock, serve_cfg.workers, serve_cfg.graceful_timeout_s, state)


BATCHING = ("max_batch_size", "max_delay_ms")


def batching_over(serve_cfg: ServeConfig, overrides: dict[str, Any]) -> Batching | None:
    """serve.batching with --max-batch-size / --max-delay-ms over it: a size of 1 turns it
    off, a delay alone changes the configured batching's delay (refused when it is off)."""
    size, delay = overrides.get("max_batch_size"), overrides.get("max_delay_ms")
    current = serve_cfg.batching
    if size is not None and size < 2:
        return None
    if size is None and current is None:
        if delay is not None:
            raise InputError(
                "--max-delay-ms: batching is off; turn it on with --max-batch-size N "
                "(N >= 2) or serve.batching in mlops.yaml"
            )
        return None
    return Batching(
        size if size is not None else current.max_batch_size,  # type: ignore[union-attr]
        float(delay) if delay is not None else (current.max_delay_ms if current else 2.0),
    )


def build_settings(
    chosen: list[tuple[ModelSpec, float | None]],
    serve_cfg: ServeConfig,
    monitor: MonitorConfig,
    collect: bool | None,
    log_dir: Path,
    state: Path,
    isolation: str = "auto",
    shadow: tuple[ModelSpec, float] | None = None,
) -> ServiceSettings:
    """The service's settings; ``shadow`` (a version and the percent of requests it scores
    unseen) is loaded beside the others at weight 0."""
    weights = server.split_weights(chosen)
    specs = [spec for spec, _ in chosen]
    if shadow is not None:
        spec, percent = shadow
        if spec.version in weights:
            raise InputError(
                f"--shadow: v{spec.version} is already served; a shadow is another version"
            )
        if spec.name != specs[0].name:
            raise InputError(f"--shadow: one endpoint serves one model; got {spec.name}")
        specs.append(spec)
        weights[spec.version] = 0.0
    input_log = None
    if monitor.collect if collect is None else collect:
        if monitor.format == "parquet":
            require("parquet", "monitor.format: parquet")
        input_log = LogSettings(
            folder=log_dir.resolve(),
            model=specs[0].name,
            features=specs[0].features,
            format=monitor.format,
            flush_rows=monitor.flush_rows,
            flush_seconds=monitor.flush_seconds,
            rotate_bytes=int(monitor.rotate_mb * 1024 * 1024),
            durable=monitor.durable,
        )
    return ServiceSettings(
        models=specs,
        weights=weights,
        intra_op_threads=serve_cfg.intra_op_threads,
        max_payload_bytes=serve_cfg.max_payload_bytes,
        read_timeout_s=serve_cfg.read_timeout_s,
        max_batch_rows=serve_cfg.max_batch_rows,
        admin_token=os.environ.get(serve_cfg.admin_token_env) or None,
        access_log=serve_cfg.access_log,
        input_log=input_log,
        state_file=state / "service.json" if serve_cfg.workers > 1 else None,
        isolation=isolation,
        shadow=Shadow(shadow[0].version, shadow[1]) if shadow else None,
        batching=serve_cfg.batching,
        providers=serve_cfg.providers,
    )


def _shadow(
    config: Config | None, model: str | None, ref: server.Weighted, state: Path
) -> tuple[ModelSpec, float]:
    """The shadow's package (a registered version, or a package folder) and its percent."""
    percent = 100.0 if ref.weight is None else ref.weight
    if not 0 < percent <= 100:
        raise InputError(f"--shadow '{ref.ref}={ref.weight:g}': the percent must be in (0, 100]")
    if server.is_registry_ref(ref.ref):
        assert config is not None
        from mlops_ci.registry import open_registry

        registry = open_registry(config)
        found = server.from_registry(registry, model or config.model.name, [ref], state)
        return found[0][0], percent
    return server.from_dirs([ref])[0][0], percent


def runner_isolation(given: str | None, config: Config | None) -> str:
    """The sandbox of a native model's runner: ``--isolation``, else ``train.isolation`` of
    the mlops.yaml there is, else ``auto``."""
    if given:
        return given
    return config.train.isolation if config else "auto"


def checked_isolation(mode: str, given: str | None) -> str:
    """The line saying how the runner's child is isolated; ``required`` where no sandbox
    works is refused here (exit 2), before anything listens, naming where it was asked."""
    from mlops_ci.sandbox import isolation_for

    found = isolation_for("auto" if mode == "required" else mode)
    if mode == "required" and found.mechanism is None:
        where = "--isolation" if given else "mlops.yaml: train.isolation"
        raise InputError(
            f"{where}: required, but {found.why}",
            hint="install bubblewrap (apt-get install bubblewrap), or serve with "
            "--isolation auto (a plain child, this process undumpable first)",
        )
    return found.line


def _optional_config(path: Path | None, needed: bool) -> Config | None:
    if path is not None or needed or find_config(None).is_file():
        return load_config(path)
    return None


def _models(
    config: Config | None,
    model: str | None,
    model_dirs: list[str],
    versions: list[str],
    state: Path,
) -> list[tuple[ModelSpec, float | None]]:
    if not model_dirs and not versions:
        raise InputError(
            "nothing to serve: give --model-dir DIR or --version N|@ALIAS",
            hint="e.g. mlops-ci serve --version @production",
        )
    chosen = server.from_dirs([server.parse_weighted(d, "--model-dir") for d in model_dirs])
    if versions:
        assert config is not None
        from mlops_ci.registry import open_registry

        refs = [server.parse_weighted(v, "--version") for v in versions]
        chosen += server.from_registry(
            open_registry(config), model or config.model.name, refs, state
        )
    return chosen
