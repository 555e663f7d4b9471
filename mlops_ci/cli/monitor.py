"""The monitoring verbs: drift, quality, batch-score."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from mlops_ci.cli.common import (
    CONFIG_OPTION,
    ISOLATION_OPTION,
    exit_without_teardown,
    load,
    notify,
    open_registry,
    warn,
)
from mlops_ci.errors import MlopsError
from mlops_ci.ui.printable import echo


@click.command()
@CONFIG_OPTION
@click.option(
    "--reference",
    default=None,
    help="Reference data, CSV/Parquet file or folder (default: monitor.drift.reference).",
)
@click.option(
    "--current",
    default=None,
    help="Data to check: the serve input log folder or CSV/Parquet files "
    "(default: monitor.drift.current, else monitor.log_dir).",
)
def drift(config_path: Path | None, reference: str | None, current: str | None) -> None:
    """Check the data the model receives for drift against its reference data.

    Per feature: population stability index, a two-sample test (Kolmogorov-Smirnov or
    chi-squared), missing values and range; prediction drift from the input log. Streams
    both sides in chunks. Writes .mlops/drift.{json,md}; exit 1 when drift passes the
    thresholds of monitor.drift.
    """
    from mlops_ci.ci import emit_outputs, write_summary
    from mlops_ci.errors import GateFailed
    from mlops_ci.steps.drift import DRIFTED, TOO_FEW, markdown
    from mlops_ci.steps.drift import drift as drift_step

    config = load(config_path)
    # Paths given here are the caller's (relative to the working folder); mlops.yaml's are
    # relative to mlops.yaml.
    result = drift_step(
        config,
        str(Path(reference).resolve()) if reference else None,
        str(Path(current).resolve()) if current else None,
    )
    text = markdown(result)
    echo(text)
    write_summary(text)
    emit_outputs(
        {"drift-verdict": result.verdict, "drifted": ",".join(f.name for f in result.drifted)}
    )
    notify(
        config,
        "drift.detected" if result.verdict == DRIFTED else "drift.checked",
        f"{config.model.name}/drift",
        {
            "model": config.model.name,
            "verdict": result.verdict,
            "current": result.current,
            "rows": result.current_rows,
            "drifted": [f.name for f in result.drifted],
            "psi": {f.name: round(f.psi, 6) for f in result.features},
        },
    )
    if result.verdict == TOO_FEW:
        echo(
            f"warning: {result.current_rows} current rows (< monitor.drift.min_rows): not judged",
            err=True,
        )
    if result.verdict == DRIFTED:
        names = ", ".join(f.name for f in result.drifted)
        raise GateFailed(f"data drift in {names}; see .mlops/drift.md")


@click.command()
@CONFIG_OPTION
@click.option(
    "--labels",
    default=None,
    metavar="FILE",
    help="The true answers that arrived later: a CSV, Parquet or JSON Lines file (or a folder "
    "of them) with the columns request_id, row (optional: the row within the request, from 0) "
    "and the target column of evaluate.target (default: monitor.quality.labels).",
)
@click.option(
    "--current",
    default=None,
    metavar="LOG",
    help="The serve input log folder to join them to (default: monitor.log_dir).",
)
@click.option(
    "--every",
    default=None,
    metavar="DURATION",
    help="Also compute the metrics per period of this length, by each row's logged time "
    "(30m, 1h, 1d, ...; default: monitor.quality.every).",
)
@click.option(
    "--production",
    "production_version",
    default=None,
    metavar="VERSION",
    help="The version to treat as production (default: the version that answered the "
    "labelled requests; with several, the one behind registry.production_alias).",
)
@click.option(
    "--candidate",
    default=None,
    metavar="VERSION",
    help="The shadow version to judge against production (default: the shadow version "
    "with the most labelled rows).",
)
def quality(
    config_path: Path | None,
    labels: str | None,
    current: str | None,
    every: str | None,
    production_version: str | None,
    candidate: str | None,
) -> None:
    """Judge the served model on real requests, with labels that arrive later.

    Joins the labels to the serve input log by request id and row, and computes each
    version's evaluate.metrics there with the same code as compare, over the whole window and
    per period. A shadow version (serve --shadow) that scored the same labelled rows is judged
    against production as compare judges a candidate: the gate's rules and the paired
    bootstrap (verdict pass, fail, or inconclusive on too few rows). Writes
    .mlops/quality.{json,md}; exit 1 and the event model.quality.degraded when production's
    live metrics break a min/max rule of gate.rules.
    """
    from mlops_ci.ci import emit_outputs, write_summary
    from mlops_ci.errors import GateFailed
    from mlops_ci.report.quality import markdown
    from mlops_ci.steps.quality import quality as quality_step

    config = load(config_path)
    # Paths given here are the caller's (relative to the working folder); mlops.yaml's are
    # relative to mlops.yaml.
    result = quality_step(
        config,
        str(Path(labels).resolve()) if labels else None,
        str(Path(current).resolve()) if current else None,
        every,
        production_version,
        candidate,
        lambda: _production_version(config),
    )
    record = result.record
    _record_live(config, record)
    text = markdown(record)
    echo(text)
    write_summary(text)
    health = record["production_health"] or {}
    comparison = record["comparison"] or {}
    outputs = {
        "quality-verdict": result.verdict,
        "production-health": str(health.get("verdict", "none")),
        "production": str(health.get("version", "")),
        "candidate": str(comparison.get("candidate", "")),
    }  # a plain dict: tests/actions read the output names off this source
    emit_outputs(outputs)
    failed = [c["name"] for c in health.get("checks", []) if c["status"] == "fail"]
    notify(
        config,
        "model.quality.degraded" if result.degraded else "model.quality.checked",
        f"{config.model.name}/quality",
        {
            "model": config.model.name,
            "version": health.get("version"),
            "verdict": health.get("verdict"),
            "rows": health.get("rows", 0),
            "metrics": health.get("metrics", {}),
            "failed": failed,
            "comparison": {k: comparison.get(k) for k in ("candidate", "verdict", "rows")},
            "current": record["current"],
            "labels": record["labels"],
        },
    )
    if health.get("verdict") == "too-few-rows":
        echo(
            f"warning: {health['rows']} labelled rows of production (< monitor.quality.min_rows):"
            " its bounds are not judged",
            err=True,
        )
    if result.degraded:
        raise GateFailed(
            f"live quality of {config.model.name} v{health['version']} breaks the gate: "
            f"{', '.join(failed)}; see .mlops/quality.md"
        )


def _record_live(config: Any, record: dict[str, Any]) -> None:
    """The live figures on each version in the registry (for `lineage`); a registry that
    cannot be reached costs only that, said as a warning."""
    from mlops_ci.steps.live_tags import record_live

    if not record.get("versions"):
        return
    try:
        absent = record_live(open_registry(config), config.model.name, record)
    except MlopsError as err:
        warn(f"the live figures were not recorded on the versions: {err}")
        return
    if absent:
        warn(f"not in the registry, so not tagged with their live figures: v{', v'.join(absent)}")


def _production_version(config: Any) -> str | None:
    """The version registry.production_alias names, None when the registry cannot say."""
    alias = config.registry.production_alias
    try:
        found = open_registry(config).get_version_by_alias(config.model.name, alias)
    except MlopsError as err:
        warn(f"the registry could not say which version is @{alias}: {err}")
        return None
    return None if found is None else str(found.version)


@click.command("batch-score")
@CONFIG_OPTION
@click.option(
    "--model",
    "model_ref",
    default=None,
    metavar="NAME@ALIAS|NAME:VERSION",
    help="Registered, packaged model version, e.g. iris-classifier@production "
    "(@ALIAS or a number alone use model.name of mlops.yaml).",
)
@click.option(
    "--model-dir",
    type=click.Path(path_type=Path),
    default=None,
    help="A package folder written by `mlops-ci package`, instead of --model.",
)
@click.option(
    "--input",
    "input_path",
    type=click.Path(path_type=Path),
    required=True,
    help="CSV or Parquet file, or a folder of them.",
)
@click.option(
    "--output",
    type=click.Path(path_type=Path),
    required=True,
    help="A .parquet or .csv file, or a folder for Parquet part files.",
)
@click.option(
    "--engine",
    type=click.Choice(["local", "dask"]),
    default="local",
    show_default=True,
    help="local: this process and workers forked from it (Linux; else threads); dask: a Dask "
    "cluster.",
)
@click.option(
    "--processes",
    type=click.IntRange(min=1),
    default=None,
    help="Workers: this process and processes forked from it (local) or LocalCluster workers "
    "(dask); default: CPU count.",
)
@click.option(
    "--scheduler",
    default=None,
    metavar="tcp://HOST:PORT",
    help="Dask scheduler address; without it a LocalCluster is started.",
)
@click.option(
    "--chunk-rows",
    type=click.IntRange(min=1),
    default=None,
    help="Rows per task: the unit of work, of memory and of resuming "
    "(default: 8 tasks per worker, 10,000 to 100,000 rows; a resumed job keeps its own).",
)
@click.option(
    "--id-column",
    "id_columns",
    multiple=True,
    help="Input column to keep in the output; repeatable (default: every non-feature column).",
)
@click.option(
    "--max-reject-rate",
    type=click.FloatRange(0, 1),
    default=0.0,
    show_default=True,
    help="Share of rejected rows above which the job fails (exit 1).",
)
@ISOLATION_OPTION
def batch_score(
    config_path: Path | None,
    model_ref: str | None,
    model_dir: Path | None,
    input_path: Path,
    output: Path,
    engine: str,
    processes: int | None,
    scheduler: str | None,
    chunk_rows: int | None,
    id_columns: tuple[str, ...],
    max_reject_rate: float,
    isolation: str | None,
) -> None:
    """Score a large table in chunks with a packaged model, on this machine or on Dask.

    Rows that cannot be parsed or scored go to a rejects file with the error. An interrupted
    job resumes: run the same command again and finished chunks are not scored twice. A
    native (scikit-learn) model is loaded and called only in a child process of each scoring
    process, in the sandbox of --isolation.
    """
    import os

    from mlops_ci.extras import require

    require("batch", "mlops-ci batch-score")
    workers = processes or os.cpu_count() or 1
    from mlops_ci.steps.batch_score import batch_score as batch_step
    from mlops_ci.ui.progress import RowProgress

    spec, config = _batch_model(config_path, model_ref, model_dir)
    echo(
        f"scoring {input_path} with {spec.name} v{spec.version} ({spec.format}), "
        f"engine {engine}, {workers} worker(s)"
    )
    mode = isolation or "auto"
    if spec.format != "onnx":
        from mlops_ci.serve.command import checked_isolation, runner_isolation

        mode = runner_isolation(isolation, config or _optional_config(config_path, isolation))
        echo(f"native model runner: {checked_isolation(mode, isolation)}")
    with RowProgress("batch-score") as progress:
        result = batch_step(
            spec,
            input_path,
            output,
            engine,
            workers,
            scheduler,
            chunk_rows,
            id_columns or None,
            max_reject_rate,
            progress,
            mode,
        )
    if result.resumed:
        echo(f"resumed: {result.resumed} of {result.tasks} chunks were already scored")
    echo(
        f"{result.rows:,} rows: {result.scored:,} scored, {result.rejected:,} rejected "
        f"({result.reject_rate:.2%}) in {result.seconds:.1f}s = {result.rows_per_s:,.0f} rows/s"
    )
    echo(f"output: {result.output}" + (f"; rejects: {result.rejects}" if result.rejects else ""))
    if engine == "local":  # its parts written and renamed, its forked workers joined
        exit_without_teardown()


def _optional_config(config_path: Path | None, given: str | None) -> Any:
    """mlops.yaml for train.isolation, where --isolation is not given and there is one."""
    from mlops_ci.config.file import find_config

    if given or (config_path is None and not find_config(None).is_file()):
        return None
    return load(config_path)


def _batch_model(
    config_path: Path | None, ref: str | None, model_dir: Path | None
) -> tuple[Any, Any]:
    """The package to score with, and mlops.yaml when it was read to find it."""
    from mlops_ci.serve.model import read_spec

    if (ref is None) == (model_dir is None):
        raise MlopsError("give --model NAME@ALIAS (or NAME:VERSION) or --model-dir, one of them")
    if model_dir is not None:
        return read_spec(model_dir), None
    from mlops_ci.records import JobFolder
    from mlops_ci.serve.server import Weighted, from_registry

    config = load(config_path)
    assert ref is not None
    if "@" in ref:
        name, _, alias = ref.partition("@")
        version = "@" + alias
    elif ":" in ref:
        name, _, version = ref.partition(":")
    else:
        name, version = "", ref
    name = name or config.model.name
    state = JobFolder(config.root).batch_state
    ((spec, _),) = from_registry(open_registry(config), name, [Weighted(version, None)], state)
    return spec, config
