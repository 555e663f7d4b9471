"""What `mlops-ci serve` serves, and running it on uvicorn.

Models come from package folders (``--model-dir``, as in the Docker image) or from the registry
(``--version 3``, ``--version @production``): a registry version is served from the files
``package`` logged for it, downloaded once into the state folder and checked against the sha256
recorded on the version, before any worker starts.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlops_ci.errors import InputError, ServiceError
from mlops_ci.registry import ModelRegistry, resolve_version
from mlops_ci.serve.model import ModelSpec, read_spec

TAG_PACKAGE_SHA256 = "mlops.package.sha256"
TAG_PACKAGE_COMPLETE = "mlops.package.complete"


@dataclass(frozen=True)
class Weighted:
    """One ``REF[=WEIGHT]`` of the command line."""

    ref: str
    weight: float | None


def parse_weighted(text: str, option: str) -> Weighted:
    ref, sep, weight = text.rpartition("=") if "=" in text else (text, "", "")
    if not sep:
        return Weighted(text, None)
    try:
        value = float(weight)
    except ValueError:
        raise InputError(f"{option} '{text}': the weight after '=' must be a number") from None
    if value < 0:
        raise InputError(f"{option} '{text}': the weight must be >= 0")
    return Weighted(ref, value)


def is_registry_ref(ref: str) -> bool:
    """``N`` or ``@ALIAS`` names a registered version; anything else is a package folder."""
    return ref.startswith("@") or ref.isdigit()


def from_dirs(dirs: list[Weighted]) -> list[tuple[ModelSpec, float | None]]:
    return [(read_spec(Path(d.ref)), d.weight) for d in dirs]


def from_registry(
    registry: ModelRegistry, name: str, refs: list[Weighted], state_dir: Path
) -> list[tuple[ModelSpec, float | None]]:
    """Download each version's packaged files and check them against the version's tags."""
    out = []
    for item in refs:
        version = resolve_version(registry, name, item.ref)
        tags = version.tags
        if tags.get(TAG_PACKAGE_COMPLETE) != "true" or not version.run_id:
            raise InputError(
                f"{name} v{version.version} is not packaged",
                hint=f"run `mlops-ci package --version {version.version}` first",
            )
        dest = state_dir / "models" / f"{name}-{version.version}"
        if dest.exists():
            shutil.rmtree(dest)
        folder = registry.download_model(f"runs:/{version.run_id}/package/v{version.version}", dest)
        spec = read_spec(folder)
        if spec.sha256 != tags.get(TAG_PACKAGE_SHA256):
            from mlops_ci.model.integrity import IntegrityError

            raise IntegrityError(
                f"{name} v{version.version}: packaged files have sha256 {spec.sha256[:12]}, "
                f"the version records {str(tags.get(TAG_PACKAGE_SHA256))[:12]}; refusing to serve",
                hint="re-run `mlops-ci package` for this version",
            )
        out.append((spec, item.weight))
    return out


def split_weights(chosen: list[tuple[ModelSpec, float | None]]) -> dict[str, float]:
    """Weights per version: all given, or none (then equal shares)."""
    versions = [spec.version for spec, _ in chosen]
    if len(set(versions)) != len(versions):
        raise InputError(f"the same version is given twice: {', '.join(versions)}")
    names = {spec.name for spec, _ in chosen}
    if len(names) > 1:
        raise InputError(f"one endpoint serves one model; got {', '.join(sorted(names))}")
    given = [w for _, w in chosen if w is not None]
    if given and len(given) != len(chosen):
        raise InputError("give a weight to every version (REF=WEIGHT) or to none")
    if not given:
        return {v: 1.0 for v in versions}
    if sum(given) <= 0:
        raise InputError("at least one weight must be above 0")
    return {spec.version: float(w or 0.0) for spec, w in chosen}


def log_config() -> dict[str, Any]:
    """uvicorn's logging and ours. uvicorn's access log is off: the service writes its own
    JSON lines (``serve.accesslog``), naming the model version and the request id."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"default": {"format": "%(levelname)s %(name)s: %(message)s"}},
        "handlers": {
            "default": {
                "class": "logging.StreamHandler",
                "formatter": "default",
                "stream": "ext://sys.stderr",
            },
        },
        "loggers": {
            "uvicorn": {"handlers": ["default"], "level": "INFO", "propagate": False},
            "uvicorn.error": {"level": "INFO"},
            "mlops_ci.serve": {"handlers": ["default"], "level": "INFO", "propagate": False},
        },
    }


def run(
    settings: Any,
    sock: socket.socket,
    workers: int,
    graceful_timeout_s: float,
    state_dir: Path,
) -> None:
    """Serve on the bound ``sock`` until SIGINT/SIGTERM; in-flight requests get
    ``graceful_timeout_s`` to finish."""
    import uvicorn
    from uvicorn.supervisors import Multiprocess

    from mlops_ci.serve.app import create_app
    from mlops_ci.serve.connections import LimitedHttpToolsProtocol, budget
    from mlops_ci.serve.service import settings_to_env

    common: dict[str, Any] = {
        "access_log": False,
        "log_config": log_config(),
        "timeout_graceful_shutdown": graceful_timeout_s,
        "server_header": False,
        "http": LimitedHttpToolsProtocol,  # connections within the open-file limit
        "backlog": budget().backlog,  # accepted in one go: it must fit in that limit too
    }
    if workers == 1:
        app = create_app(settings)
        single = uvicorn.Server(uvicorn.Config(app, **common))
        try:
            with contextlib.suppress(KeyboardInterrupt):
                single.run(sockets=[sock])
        finally:  # the lifespan's end closes them too, when the service started
            app.state.service.close()
        if not single.started:  # uvicorn.run's exit 3: the startup failed, as logged above
            raise ServiceError("serve: the service did not start (its log says why)")
        return
    from mlops_ci.serve.router import SharedState, StateFile

    if settings.state_file is None:
        raise InputError("several workers need a shared state file (settings.state_file)")
    models = {spec.version: str(spec.folder) for spec in settings.models}
    StateFile(settings.state_file).write(
        SharedState(dict(settings.weights), models, settings.shadow)
    )
    prom = state_dir / "prometheus"
    shutil.rmtree(prom, ignore_errors=True)
    prom.mkdir(parents=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(prom)
    os.environ["MLOPS_SERVE_SETTINGS"] = settings_to_env(settings)
    if settings.admin_token:
        os.environ["MLOPS_SERVE_ADMIN_TOKEN"] = settings.admin_token
    config = uvicorn.Config(
        "mlops_ci.serve.app:app_from_env", factory=True, workers=workers, **common
    )
    with contextlib.suppress(KeyboardInterrupt):  # as uvicorn.run: Ctrl-C is a normal stop
        Multiprocess(config, sockets=[sock]).run()
