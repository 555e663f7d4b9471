"""What the verbs share: the options declared once, loading mlops.yaml and the registry,
warnings as CI annotations, lifecycle events, and the start-up pacing of the collector."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from mlops_ci.ui.printable import echo

if TYPE_CHECKING:
    from mlops_ci.config.types import Config

CONFIG_OPTION = click.option(
    "--config",
    "-c",
    "config_path",
    type=click.Path(path_type=Path),
    default=None,
    help="mlops.yaml, or the folder holding it (default: ./mlops.yaml).",
)


F = TypeVar("F", bound=Callable[..., Any])


def by_option(doing: str) -> Callable[[F], F]:
    """``--by``: who does the step, recorded on the version."""
    return click.option(
        "--by",
        default=None,
        help=f"Who {doing} (default: the CI actor, else git user.name, else the OS login).",
    )


def who_and_why(doing: str, recorded_on: str = "the version") -> Callable[[F], F]:
    """``--by`` and ``--reason``: who does the step and why, both recorded."""
    by = by_option(doing)
    reason = click.option("--reason", required=True, help=f"Why; recorded on {recorded_on}.")
    return lambda verb: by(reason(verb))


def actor(by: str | None) -> str:
    """--by, else the CI actor, else `git config user.name`, else the OS login."""
    from mlops_ci.provenance import who

    return by or who()


VERSION_OPTION = click.option(
    "--version",
    "version",
    required=True,
    help="Model version: a number, or @alias (e.g. @candidate).",
)


MODEL_NAME_OPTION = click.option(
    "--model", default=None, help="Registered model name (default: model.name of mlops.yaml)."
)

ISOLATION_OPTION = click.option(
    "--isolation",
    type=click.Choice(["auto", "required", "off"]),
    default=None,
    help="The sandbox a native (scikit-learn) model is loaded and called in, as "
    "train.isolation: auto (bubblewrap where it works, else a plain child with this process "
    "made undumpable), required (refuse without it) or off (a plain child, nothing changed). "
    "Default: train.isolation of mlops.yaml, else auto. ONNX models run in this process.",
)


def timings_line(timings: dict[str, float]) -> str:
    """``trained in 2.9 s; evaluation 0.1 s; importance 8.7 s; logging 1.2 s``: each part of
    a train apart, so the user's command is not blamed for mlops-ci's own work."""
    stages = [v for k, v in timings.items() if k.startswith("stage ")]
    ran = "command" in timings or stages  # a model handed in (train --model) ran nothing
    parts = [f"trained in {timings.get('command', sum(stages)):.1f} s"] if ran else []
    parts += [
        f"{k} {timings[k]:.1f} s" for k in ("evaluation", "importance", "logging") if k in timings
    ]
    return "; ".join(parts)


def load(config_path: Path | None) -> Config:
    from mlops_ci.config.types import load_config

    return load_config(config_path)


def warn(message: str) -> None:
    """A warning the CI shows as an annotation (::warning, ##vso logissue) and the log as a line."""
    from mlops_ci.ci import warning_annotation

    for command in warning_annotation(message):
        click.echo(command)
    echo(f"warning: {message}", err=True)


def notify(config: Config, name: str, subject: str, data: dict[str, Any]) -> None:
    """Send lifecycle event ``name`` (notify in mlops.yaml); report each failed delivery."""
    from mlops_ci.errors import ServiceError
    from mlops_ci.events import emit

    failed = []
    for delivery in emit(config, name, subject, data):
        if delivery.status == "delivered":
            echo(f"event {delivery.type} -> {delivery.target}: {delivery.detail}")
        else:
            failed.append(delivery)
            warn(
                f"event {delivery.type} ({delivery.event_id}) to {delivery.target} "
                f"not delivered after {delivery.attempts} attempt(s): {delivery.detail}"
            )
    if failed and config.notify.fail_on_error:
        raise ServiceError(
            f"{len(failed)} event delivery(ies) failed",
            hint="notify.fail_on_error is true; set it false to report and go on",
        )


def open_registry(config: Config) -> Any:
    from mlops_ci.registry import open_registry

    registry = open_registry(config)
    settle_gc()  # MLflow, SQLAlchemy and pandas are imported by now
    return registry


# Starting a registry verb allocates about a million long-lived objects (MLflow, SQLAlchemy,
# pandas); at CPython's default pace the collector walks them again and again: 0.25 s of a
# 1.5 s verb, measured. A command-line process defers collection until they are loaded.
STARTUP_GC_THRESHOLD = (50_000, 20, 20)


_usual_gc_threshold: tuple[int, int, int] | None = None


_fast_exit = [False]


def exit_without_teardown() -> None:
    """Ask ``main`` to end this process with ``os._exit`` once the verb has returned and its
    output is flushed: Python's teardown frees every object of numpy, pandas, pyarrow and
    onnxruntime one by one (about 65 ms of a 0.7 s `batch-score` here, paid whatever the
    worker count). Only for a verb whose files are all written, closed and renamed and whose
    workers are joined when it returns: nothing registered to run at exit is left to do."""
    _fast_exit[0] = True


def finish_fast() -> None:
    """End the process now if the verb asked for it (``exit_without_teardown``)."""
    if not _fast_exit[0]:
        return
    import logging

    sys.stdout.flush()
    sys.stderr.flush()
    logging.shutdown()
    os._exit(0)


def defer_gc() -> None:
    global _usual_gc_threshold
    import gc

    _usual_gc_threshold = gc.get_threshold()
    gc.set_threshold(*STARTUP_GC_THRESHOLD)


def settle_gc() -> None:
    """Start-up done: its objects are kept out of later collections (gc.freeze) and the
    collector's usual pace returns for the verb's own work. Only in a process ``main`` began."""
    global _usual_gc_threshold
    import gc

    if _usual_gc_threshold is not None:
        gc.freeze()
        gc.set_threshold(*_usual_gc_threshold)
        _usual_gc_threshold = None


SECRET_VARIABLES = ("MLFLOW_TRACKING_TOKEN", "MLFLOW_TRACKING_PASSWORD", "MLOPS_ADMIN_TOKEN")


def mask_secrets() -> None:
    """In CI, tell the platform to hide secret values this process may hold (::add-mask::,
    ##vso[task.setvariable …;issecret=true]) before anything could print them."""
    import os

    from mlops_ci.ci import mask_secret

    for name in SECRET_VARIABLES:
        if os.environ.get(name):
            for command in mask_secret(name, os.environ[name]):
                click.echo(command)
