"""The `mlops-ci` command: one short function per verb; heavy libraries load inside verbs only.

Every failure is an MlopsError caught in ``main`` and printed as one line (plus a hint), with
the exit code of its class: 1 the gate said no, 2 bad input, 3 an outside service failed.
"""

from __future__ import annotations

import io
import sys
import tempfile
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from mlops_ci import __version__
from mlops_ci.errors import ConfigError, MlopsError
from mlops_ci.printable import echo, single_line

if TYPE_CHECKING:
    from mlops_ci.config import Config

INTERNAL_ERROR = 4

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


VERSION_OPTION = click.option(
    "--version",
    "version",
    required=True,
    help="Model version: a number, or @alias (e.g. @candidate).",
)


def _timings(timings: dict[str, float]) -> str:
    """``trained in 2.9 s; evaluation 0.1 s; importance 8.7 s; logging 1.2 s``: each part of
    a train apart, so the user's command is not blamed for mlops-ci's own work."""
    stages = sum(v for k, v in timings.items() if k.startswith("stage "))
    parts = [f"trained in {timings.get('command', stages):.1f} s"]
    parts += [
        f"{k} {timings[k]:.1f} s" for k in ("evaluation", "importance", "logging") if k in timings
    ]
    return "; ".join(parts)


def _load(config_path: Path | None) -> Config:
    from mlops_ci.config import load_config

    return load_config(config_path)


def _warn(message: str) -> None:
    """A warning the CI shows as an annotation (::warning, ##vso logissue) and the log as a line."""
    from mlops_ci.ci import warning_annotation

    for command in warning_annotation(message):
        click.echo(command)
    echo(f"warning: {message}", err=True)


def _notify(config: Config, name: str, subject: str, data: dict[str, Any]) -> None:
    """Send lifecycle event ``name`` (notify in mlops.yaml); report each failed delivery."""
    from mlops_ci.errors import ServiceError
    from mlops_ci.events import emit

    failed = []
    for delivery in emit(config, name, subject, data):
        if delivery.status == "delivered":
            echo(f"event {delivery.type} -> {delivery.target}: {delivery.detail}")
        else:
            failed.append(delivery)
            _warn(
                f"event {delivery.type} ({delivery.event_id}) to {delivery.target} "
                f"not delivered after {delivery.attempts} attempt(s): {delivery.detail}"
            )
    if failed and config.notify.fail_on_error:
        raise ServiceError(
            f"{len(failed)} event delivery(ies) failed",
            hint="notify.fail_on_error is true; set it false to report and go on",
        )


def _open(config: Config) -> Any:
    from mlops_ci.registry import open_registry

    registry = open_registry(config)
    _settle_gc()  # MLflow, SQLAlchemy and pandas are imported by now
    return registry


# Starting a registry verb allocates about a million long-lived objects (MLflow, SQLAlchemy,
# pandas); at CPython's default pace the collector walks them again and again: 0.25 s of a
# 1.5 s verb, measured. A command-line process defers collection until they are loaded.
_STARTUP_GC_THRESHOLD = (50_000, 20, 20)
_usual_gc_threshold: tuple[int, int, int] | None = None


def _defer_gc() -> None:
    global _usual_gc_threshold
    import gc

    _usual_gc_threshold = gc.get_threshold()
    gc.set_threshold(*_STARTUP_GC_THRESHOLD)


def _settle_gc() -> None:
    """Start-up done: its objects are kept out of later collections (gc.freeze) and the
    collector's usual pace returns for the verb's own work. Only in a process ``main`` began."""
    global _usual_gc_threshold
    import gc

    if _usual_gc_threshold is not None:
        gc.freeze()
        gc.set_threshold(*_usual_gc_threshold)
        _usual_gc_threshold = None


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="mlops-ci")
@click.option("--debug", is_flag=True, help="Show the full traceback of errors.")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """CI/CD for machine-learning models.

    Train a model (cached), compare it fairly with the model in production, register it in the
    MLflow model registry and promote it. Start with `mlops-ci demo`, or `mlops-ci init` in
    your project.
    """
    ctx.obj = {"debug": debug}
    _mask_secrets()


SECRET_VARIABLES = ("MLFLOW_TRACKING_TOKEN", "MLFLOW_TRACKING_PASSWORD", "MLOPS_ADMIN_TOKEN")


def _mask_secrets() -> None:
    """In CI, tell the platform to hide secret values this process may hold (::add-mask::,
    ##vso[task.setvariable …;issecret=true]) before anything could print them."""
    import os

    from mlops_ci.ci import mask_secret

    for name in SECRET_VARIABLES:
        if os.environ.get(name):
            for command in mask_secret(name, os.environ[name]):
                click.echo(command)


@cli.command()
@click.option(
    "--dir",
    "folder",
    type=click.Path(path_type=Path),
    default=Path("."),
    help="Project folder to write into.",
)
@click.option(
    "--ci",
    type=click.Choice(["github", "azure"]),
    default=None,
    help="Also copy the CI templates (github: into .github/workflows/; azure: the multi-stage "
    "pipeline and step templates into .azure-pipelines/).",
)
@click.option(
    "--actions-repo",
    default="mlops-ci/mlops-ci",
    show_default=True,
    help="OWNER/NAME the workflow templates take the mlops-ci actions from.",
)
@click.option("--force", is_flag=True, help="Overwrite files that exist.")
@click.option(
    "--from-dvc",
    "from_dvc",
    is_flag=False,
    flag_value="dvc.yaml",
    default=None,
    metavar="[DVC.YAML]",
    help="Write the stages of a DVC pipeline file (default dvc.yaml in --dir) as "
    "pipeline.stages, the training stage's model as train.outputs.model.",
)
def init(
    folder: Path, ci: str | None, actions_repo: str, force: bool, from_dvc: str | None
) -> None:
    """Write a commented starter mlops.yaml, and with --ci the CI workflow templates.

    With --from-dvc the starter takes its pipeline from an existing dvc.yaml (or keep that
    file as the source of truth instead: `pipeline: {dvc: dvc.yaml}` in mlops.yaml).
    """
    from mlops_ci.scaffold import init_project

    result = init_project(folder, ci, force, actions_repo, from_dvc)
    for path in result.written:
        echo(f"wrote {path}")
    for path in result.kept:
        echo(f"kept {path} (exists; --force overwrites)")
    echo("next: edit mlops.yaml, then run `mlops-ci validate`")


@cli.command()
@CONFIG_OPTION
def validate(config_path: Path | None) -> None:
    """Check mlops.yaml against its schema and its meaning; print every problem with its line.

    Beyond the schema: metrics that fit model.task, gate rules on known or declared metrics,
    and, when evaluate.data exists, its target and feature columns.
    """
    from mlops_ci.errors import ConfigError
    from mlops_ci.evaldata import check_columns
    from mlops_ci.stagerun import load_pipeline

    config = _load(config_path)
    load_pipeline(config)  # the stages: deps, outs, cycles, params (ConfigError with lines)
    problems = check_columns(config)
    if problems:
        raise ConfigError(problems, file=config.path)
    echo(f"{config.path}: valid (model {config.model.name})")


@cli.command()
@CONFIG_OPTION
@click.option(
    "--param",
    "params",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override a train.params value; repeatable.",
)
@click.option("--no-cache", is_flag=True, help="Retrain even when an identical run exists.")
@click.option(
    "--dry-run",
    is_flag=True,
    help="Say which stages would run and why (changed deps, params, command); run nothing.",
)
def train(config_path: Path | None, params: tuple[str, ...], no_cache: bool, dry_run: bool) -> None:
    """Run the training command and record the run, params, metrics, model and lineage in MLflow.

    When code/data inputs, params and environment match an earlier successful run, that run
    is reused instead of retraining. Prints the run id (also a `run_id` step output in CI).

    With pipeline.stages (or pipeline.dvc: a DVC dvc.yaml) the stages run in order, each
    skipped when its command, deps, params and environment are unchanged: its outs are then
    restored from .mlops/cache, or from the MLflow run that holds them on a fresh checkout.

    \b
    The command runs the pull request's code, so its environment has no credential:
    removed are GITHUB_TOKEN, GH_TOKEN, ACTIONS_RUNTIME_TOKEN, ACTIONS_ID_TOKEN_REQUEST_TOKEN,
    ACTIONS_ID_TOKEN_REQUEST_URL, SYSTEM_ACCESSTOKEN, AZURE_DEVOPS_EXT_PAT,
    MLFLOW_TRACKING_TOKEN, MLFLOW_TRACKING_USERNAME, MLFLOW_TRACKING_PASSWORD,
    MLFLOW_TRACKING_CLIENT_CERT_PATH, DATABRICKS_TOKEN, DATABRICKS_CLIENT_SECRET,
    MLOPS_ADMIN_TOKEN, every INPUT_* and SECRET_* (action inputs, Azure secret variables),
    the variable serve.admin_token_env names and every
    notify.webhooks[].secret_env; MLFLOW_TRACKING_URI and
    MLFLOW_REGISTRY_URI stay without user:password@ and secret query values.
    """
    from mlops_ci.ci import emit_outputs
    from mlops_ci.progress import StepProgress
    from mlops_ci.steps.train import parse_overrides
    from mlops_ci.steps.train import train as train_step

    config = _load(config_path)
    registry = _open(config)
    if dry_run:
        from mlops_ci.steps.train import dry_run as plan

        for stage in plan(config, registry, parse_overrides(params), use_cache=not no_cache):
            echo(f"{stage.name}: {stage.state} ({stage.why})")
        return
    with StepProgress({"importance": "features"}) as progress:
        result = train_step(
            config,
            registry,
            parse_overrides(params),
            use_cache=not no_cache,
            progress=progress,
            notify=lambda line: echo(line, err=True),
        )
    for stage in result.stages:
        echo(f"stage {stage.name}: {stage.state} in {stage.seconds:.1f} s ({stage.why})")
    if result.cached:
        echo(f"cache hit: inputs, params and environment unchanged; reusing run {result.run_id}")
    else:
        echo(f"{_timings(result.timings)}; logged run {result.run_id}")
        if result.importance_note:
            echo(f"importance: {result.importance_note}")
    for name, value in sorted(result.metrics.items()):
        if not name.startswith("stage."):  # each stage's seconds: said above
            echo(f"  {name} = {value:.4f}")
    echo(f"run_id={result.run_id}")
    emit_outputs({"run_id": result.run_id, "cached": str(result.cached).lower()})
    _notify(
        config,
        "run.completed",
        f"runs/{result.run_id}",
        {
            "model": config.model.name,
            "run_id": result.run_id,
            "cached": result.cached,
            "metrics": result.metrics,
        },
    )


@cli.command()
@CONFIG_OPTION
@click.option("--run", "run_id", default=None, help="Candidate run id (default: the last `train`).")
def compare(config_path: Path | None, run_id: str | None) -> None:
    """Score the candidate and the production model on the same evaluation data and apply the gate.

    Writes .mlops/comparison.json and .mlops/comparison.md. Exit 0 on pass or no-baseline,
    1 when the gate fails.
    """
    from mlops_ci.ci import emit_outputs
    from mlops_ci.comparison import FAIL
    from mlops_ci.errors import GateFailed
    from mlops_ci.explain import markdown
    from mlops_ci.progress import StepProgress
    from mlops_ci.steps.compare import compare as compare_step

    config = _load(config_path)
    registry = _open(config)
    with StepProgress({"importance": "features", "cost": "rounds"}) as progress:
        result = compare_step(config, registry, run_id, progress)
    echo(markdown(result, config.evaluate.importance.top))
    reused = result.evaluation.get("importance_reused") or []
    for role, found in result.importance.items():
        if found.plan is not None:
            how = " (train's, reused)" if role in reused else ""
            note = f": {found.plan.note}" if found.plan.note else ""
            echo(f"importance of the {role}: {found.plan.seconds:.1f} s{how}{note}")
    emit_outputs({"verdict": result.verdict, "run_id": result.candidate.run_id or ""})
    _notify(
        config,
        "model.compared",
        f"runs/{result.candidate.run_id}",
        {"model": config.model.name, "run_id": result.candidate.run_id, "verdict": result.verdict},
    )
    if result.verdict == FAIL:
        raise GateFailed(
            f"verdict fail for run {result.candidate.run_id}; see .mlops/comparison.md"
        )


@cli.command()
@CONFIG_OPTION
@click.option(
    "--run",
    "run_id",
    default=None,
    help="Run to register (default: the run of the last `mlops-ci train` in this checkout).",
)
@click.option(
    "--force", is_flag=True, help="Register even without a passing comparison (recorded)."
)
def register(config_path: Path | None, run_id: str | None, force: bool) -> None:
    """Register the compared run as a new model version with lineage tags; alias it `candidate`."""
    from mlops_ci.ci import emit_outputs
    from mlops_ci.steps.register import register as register_step

    config = _load(config_path)
    result = register_step(config, _open(config), run_id, force=force)
    what = "already registered as" if result.existing else "registered"
    echo(
        f"{what} {result.name} v{result.version} (verdict {result.verdict}); "
        f"alias '{result.alias}' -> v{result.version}"
    )
    emit_outputs({"model_name": result.name, "model_version": result.version})
    if not result.existing:
        _notify(
            config,
            "model.registered",
            f"{result.name}/{result.version}",
            {
                "model": result.name,
                "version": result.version,
                "run_id": result.run_id,
                "verdict": result.verdict,
                "alias": result.alias,
            },
        )


@cli.command()
@CONFIG_OPTION
@VERSION_OPTION
@by_option("promotes")
@click.option("--reason", required=True, help="Why; recorded on the version.")
@click.option("--force", is_flag=True, help="Promote even a version without a passing comparison.")
def promote(
    config_path: Path | None, version: str, by: str | None, reason: str, force: bool
) -> None:
    """Move the production alias to a model version, recording who, when and why."""
    from mlops_ci.steps.promote import promote as promote_step

    config = _load(config_path)
    result = promote_step(config, _open(config), version, _who(by), reason, force=force)
    before = f"v{result.previous}" if result.previous else "nothing"
    echo(
        f"{result.name}: alias '{result.alias}' {before} -> v{result.version} "
        f"(by {result.by}: {result.reason})"
    )
    _notify(
        config,
        "model.promoted",
        f"{result.name}/{result.version}",
        {
            "model": result.name,
            "version": result.version,
            "alias": result.alias,
            "previous": result.previous,
            "by": result.by,
            "reason": result.reason,
        },
    )


@cli.command()
@CONFIG_OPTION
@VERSION_OPTION
@click.option(
    "--model", default=None, help="Registered model name (default: model.name of mlops.yaml)."
)
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

    config = _load(config_path)
    if model and model != config.model.name:
        config = dataclasses.replace(config, model=dataclasses.replace(config.model, name=model))
    result = package_step(config, _open(config), version, build=not no_build)
    echo(f"packaged {result.name} v{result.version} as {result.format}")
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
    _notify(
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


ENV_OPTION = click.option(
    "--env",
    "env_name",
    required=True,
    help="Deployment environment: a key of deploy in mlops.yaml (e.g. staging, production).",
)


def _who(by: str | None) -> str:
    """--by, else the CI actor, else `git config user.name`, else the OS login."""
    from mlops_ci.lineage import who

    return by or who()


@cli.command()
@CONFIG_OPTION
@VERSION_OPTION
@ENV_OPTION
@by_option("deploys")
@click.option(
    "--dry-run",
    is_flag=True,
    help="kubernetes: render and show what would be applied with the kubeconfig; apply nothing.",
)
def deploy(
    config_path: Path | None, version: str, env_name: str, by: str | None, dry_run: bool
) -> None:
    """Deploy a packaged version to an environment through its gates, by a controlled rollout.

    Gates: a passed comparison, and an approval where the environment needs one (`mlops-ci
    approve`, or GitHub environment reviewers). The local and docker targets move traffic
    step by step (deploy.ENV.rollout.steps), judge each step from the endpoint's metrics and
    roll back at the first unhealthy one (exit 1); the environment's alias moves only at a
    healthy 100 %. Docker runs each version in its own container behind a front on the
    environment's port, so a version change drops no request.
    """
    import os

    from mlops_ci.ci import emit_outputs
    from mlops_ci.errors import GateFailed
    from mlops_ci.steps.deploy import deploy as deploy_step

    config = _load(config_path)
    result = deploy_step(
        config, _open(config), version, env_name, _who(by), os.environ, echo, dry_run
    )
    for gate in result.gates:
        echo(f"gate {gate.name}: {'passed' if gate.passed else 'FAILED'} — {gate.detail}")
    for line in result.plan:
        echo(line)
    split = ", ".join(f"v{v} {w:g}%" for v, w in result.split.items()) or "none"
    where = result.url or result.manifests or ""
    echo(
        f"{result.name} v{result.version} -> {result.env} ({result.target}): "
        f"{result.status}; split {split} {where}".rstrip()
    )
    if result.note:
        echo(f"note: {result.note}")
    if result.alias:
        echo(f"alias '{result.alias}' -> v{result.version}")
    emit_outputs({"deploy-status": result.status, "url": where, "model_version": result.version})
    _notify(
        config,
        "model.rolled_back" if result.status == "rolled_back" else "model.deployed",
        f"{result.name}/{result.version}",
        {
            "model": result.name,
            "version": result.version,
            "environment": result.env,
            "target": result.target,
            "status": result.status,
            "split": result.split,
            "previous": result.previous,
            "by": result.by,
        },
    )
    if result.status == "rolled_back":
        raise GateFailed(f"v{result.version} was unhealthy in {result.env} and was rolled back")


@cli.command()
@CONFIG_OPTION
@VERSION_OPTION
@ENV_OPTION
@by_option("approves")
@click.option("--reason", required=True, help="Why; recorded on the version.")
@click.option(
    "--from-azure-run",
    is_flag=True,
    help="Record the approvers of this Azure Pipelines run's environment check (REST), "
    "instead of --by.",
)
def approve(
    config_path: Path | None,
    version: str,
    env_name: str,
    by: str | None,
    reason: str,
    from_azure_run: bool,
) -> None:
    """Approve a version for an environment whose deploy needs approval (recorded on it).

    In an Azure Pipelines deployment job, --from-azure-run records who really approved the
    environment's check of this run (Azure DevOps REST: the run's approvals), not who queued it.
    """
    from mlops_ci.steps.approve import approve as approve_step

    config = _load(config_path)
    source, at = "mlops-ci approve", None
    if from_azure_run:
        by, reason, at = _azure_run_approver(reason)
        source = "azure environment check"
    number, approval = approve_step(
        config, _open(config), version, env_name, _who(by), reason, source, at
    )
    echo(
        f"approved {config.model.name} v{number} for {env_name} by {approval.by} "
        f"at {approval.at}: {approval.reason}"
    )


def _azure_run_approver(reason: str) -> tuple[str, str, str | None]:
    """(approvers, reason, when) of the approved checks of this Azure Pipelines run."""
    import os

    from mlops_ci.ci.azure import AzureReposClient, AzureSettings

    build_id = os.environ.get("BUILD_BUILDID", "")
    if not build_id:
        raise MlopsError("--from-azure-run needs BUILD_BUILDID (set by Azure Pipelines)")
    approvals = AzureReposClient(AzureSettings.from_env(os.environ)).run_approvals(build_id)
    if not approvals:
        raise MlopsError(
            f"Azure Pipelines run {build_id} has no approved check",
            hint="add an Approvals check to the environment (Pipelines → Environments)",
        )
    approvers = ", ".join(dict.fromkeys(a.by for a in approvals))
    comments = "; ".join(a.comment for a in approvals if a.comment)
    return approvers, f"{reason} ({comments})" if comments else reason, approvals[-1].at


@cli.command()
@CONFIG_OPTION
@ENV_OPTION
@by_option("rolls back")
@click.option("--reason", required=True, help="Why; recorded on the version.")
def rollback(config_path: Path | None, env_name: str, by: str | None, reason: str) -> None:
    """Put the version an environment served before back at 100 % and move its alias back."""
    from mlops_ci.steps.rollback import rollback as rollback_step

    config = _load(config_path)
    result = rollback_step(config, _open(config), env_name, _who(by), reason)
    echo(
        f"{result.name} {result.env}: v{result.from_version} -> v{result.to_version} "
        f"(by {result.by}: {result.reason})"
    )


@cli.command()
@CONFIG_OPTION
@ENV_OPTION
@by_option("undeploys")
@click.option("--reason", required=True, help="Why; recorded on the versions that served.")
def undeploy(config_path: Path | None, env_name: str, by: str | None, reason: str) -> None:
    """Stop what an environment serves: the local process, the docker containers, or the
    kubernetes objects deploy applied. Records who and why; moves no alias (the next deploy
    starts it again)."""
    import os

    from mlops_ci.steps.undeploy import undeploy as undeploy_step

    config = _load(config_path)
    result = undeploy_step(config, _open(config), env_name, _who(by), reason, os.environ)
    if result.status == "nothing":
        echo(f"{result.name} {result.env}: nothing serves there ({result.target}); unchanged")
        return
    for line in result.stopped:
        echo(f"stopped {line}")
    if result.note:
        echo(result.note)
    served = ", ".join(f"v{v}" for v in result.versions) or "no version"
    echo(
        f"{result.name} {result.env}: {result.status} ({served}; by {result.by}: "
        f"{result.reason}); alias '{result.alias}' unchanged"
    )


@cli.command()
@CONFIG_OPTION
def status(config_path: Path | None) -> None:
    """Show what runs where: per environment its alias, version, state and live split."""
    from mlops_ci.steps.status import status as status_step

    config = _load(config_path)
    for env in status_step(config, _open(config)):
        version = f"v{env.version}" if env.version else "nothing"
        line = f"{env.env:<12} {env.target:<11} {env.alias}: {version}"
        if env.state:
            line += f" ({env.state} since {env.at} by {env.by})"
        if env.running is False and env.state in ("serving", "ab"):
            line += " — NOT RUNNING: its endpoint is down (deploy again, or undeploy)"
        if env.live_split is not None:
            line += " live split " + ", ".join(f"v{v} {w:g}%" for v, w in env.live_split.items())
        if env.url:
            line += f" {env.url}"
        echo(line)


@cli.command()
@CONFIG_OPTION
@click.option(
    "--tag",
    "tags",
    multiple=True,
    metavar="KEY=VALUE",
    help="Only versions with this tag (repeat to require several), e.g. "
    "--tag mlops.git.branch=main or --tag team=fraud.",
)
@click.option("--alias", default=None, help="Only the version this alias names, e.g. production.")
@click.option(
    "--verdict",
    type=click.Choice(["pass", "fail", "no-baseline"]),
    default=None,
    help="Only versions whose comparison (at register time) gave this verdict.",
)
@click.option(
    "--limit",
    type=click.IntRange(1, 10_000),
    default=20,
    show_default=True,
    help="At most this many versions, newest first.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "json"]),
    default="table",
    show_default=True,
    help="A table for people, JSON for scripts.",
)
def versions(
    config_path: Path | None,
    tags: tuple[str, ...],
    alias: str | None,
    verdict: str | None,
    limit: int,
    fmt: str,
) -> None:
    """List the model's registered versions, newest first: aliases, verdict, primary metric,
    who registered each and when, and where it is deployed. Tag filters run in the registry,
    so this stays quick on thousands of versions."""
    from mlops_ci.steps.versions import parse_pairs
    from mlops_ci.steps.versions import versions as versions_step

    wanted = parse_pairs(tags, "--tag", search=True)
    config = _load(config_path)
    rows = versions_step(config, _open(config), wanted, alias, verdict, limit)
    if fmt == "json":
        import json

        echo(json.dumps([r.to_json() for r in rows], indent=2))
        return
    if not rows:
        echo("no version matches")
        return
    metric = rows[0].metric
    table = [["VERSION", "ALIASES", "VERDICT", metric.upper(), "REGISTERED", "BY", "DEPLOYED"]]
    for r in rows:
        deployed = ", ".join(f"{env}:{state}" for env, state in r.deployed.items())
        table.append(
            [
                f"v{r.version}",
                ",".join(r.aliases) or "-",
                r.verdict or "-",
                r.value or "-",
                r.registered_at or "-",
                r.registered_by or "-",
                deployed or "-",
            ]
        )
    _echo_table(table)


def _echo_table(table: list[list[str]]) -> None:
    """Rows as aligned columns (the first row is the header)."""
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    for row in table:
        echo("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


@cli.command()
@CONFIG_OPTION
@click.argument("ref", metavar="VERSION|@ALIAS")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "md", "json"]),
    default="table",
    show_default=True,
    help="Text for a terminal, markdown for a page or a PR, JSON for scripts.",
)
def lineage(config_path: Path | None, ref: str, fmt: str) -> None:
    """Show one version's audit trail: the commit, data and environment it was trained from and
    by which CI run; how it compared; who registered, approved, promoted, deployed and rolled
    it back, when and why, in time order; and where it serves now. What no step recorded is
    listed as missing."""
    from mlops_ci.steps.trail import markdown, trail

    config = _load(config_path)
    found = trail(config, _open(config), ref.removeprefix("v"))  # v3 reads as 3
    if fmt == "json":
        import json

        echo(json.dumps(found.to_json(), indent=2))
        return
    if fmt == "md":
        echo(markdown(found), nl=False)
        return
    aliases = f" ({', '.join('@' + a for a in found.aliases)})" if found.aliases else ""
    echo(f"{found.name} v{found.version}{aliases}  run {found.run_id or 'none'}")
    echo("\ntrained from")
    for key, value in found.trained.items():
        echo(f"  {key:<24} {value}")
    if found.params:
        echo(f"  {'params':<24} " + ", ".join(f"{k}={v}" for k, v in found.params.items()))
    if found.inputs is not None:
        echo(f"  {'inputs':<24} {len(found.inputs)} files")
    echo("\nhow it compared")
    for key, value in found.compared.items():
        echo(f"  {key:<24} {value}")
    echo("\nhistory (UTC)")
    if found.events:
        _echo_table([["  WHEN", "WHAT", "BY", "DETAIL"]]
                    + [["  " + e.at, e.what, e.by, e.detail] for e in found.events])  # fmt: skip
    echo("\nserving now: " + (", ".join(f"{e} ({w})" for e, w in found.serving.items())
                                    or "nowhere"))  # fmt: skip
    if found.missing:
        echo("\nnot recorded")
        for line in found.missing:
            echo(f"  {line}")


@cli.command()
@CONFIG_OPTION
@VERSION_OPTION
@click.argument("pairs", nargs=-1, metavar="KEY=VALUE...")
def tag(config_path: Path | None, version: str, pairs: tuple[str, ...]) -> None:
    """Set your own tags on a model version (e.g. team=fraud reviewed=yes), to find it later
    with `mlops-ci versions --tag`. The mlops. and mlflow. namespaces belong to the tools."""
    from mlops_ci.steps.versions import parse_pairs
    from mlops_ci.steps.versions import tag as tag_step

    wanted = parse_pairs(pairs, "KEY=VALUE")
    config = _load(config_path)
    done = tag_step(config, _open(config), version, wanted)
    shown = ", ".join(f"{k}={v}" for k, v in done.tags.items())
    echo(f"{done.name} v{done.version}: {shown}")


@cli.command("delete-version")
@CONFIG_OPTION
@VERSION_OPTION
def delete_version(config_path: Path | None, version: str) -> None:
    """Delete a model version from the registry; refused while any environment runs it."""
    from mlops_ci.steps.status import delete_version as delete_step

    config = _load(config_path)
    number = delete_step(config, _open(config), version)
    echo(f"deleted {config.model.name} v{number}")


@cli.command()
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
    "--model", default=None, help="Registered model name (default: model.name of mlops.yaml)."
)
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
def serve(
    config_path: Path | None,
    model_dirs: tuple[str, ...],
    versions: tuple[str, ...],
    model: str | None,
    host: str | None,
    port: int | None,
    workers: int | None,
    threads: int | None,
    collect: bool | None,
    log_dir: Path | None,
    state_dir: Path | None,
) -> None:
    """Serve model versions over HTTP: KServe Open Inference Protocol v2 and /score.

    Endpoints: POST /score ({"inputs": [[...]]} or records by column), POST
    /v2/models/NAME/infer, GET /v2/health/ready, GET /metrics (Prometheus), and
    PUT /admin/traffic to change the split (Bearer token from $MLOPS_ADMIN_TOKEN). Several
    versions share the endpoint by weight; the x-model-version header pins one.
    """
    from mlops_ci.extras import require

    require("serve", "mlops-ci serve")
    _settle_gc()  # a long-lived process: the collector's usual pace
    from mlops_ci.serve.command import start

    start(
        config_path,
        list(model_dirs),
        list(versions),
        model,
        {"host": host, "port": port, "workers": workers, "intra_op_threads": threads},
        collect,
        log_dir,
        state_dir,
    )


@cli.command()
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
    _settle_gc()  # a long-lived process: the collector's usual pace
    from mlops_ci.serve.front import UpstreamRule, run_front

    run_front(model, host, port, state_dir, token_env, UpstreamRule(upstream_base, upstream_port))


@cli.command()
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

    config = _load(config_path)
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
    _notify(
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


@cli.command("batch-score")
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
    help="local: worker processes on this machine; dask: a Dask cluster.",
)
@click.option(
    "--processes",
    type=click.IntRange(min=1),
    default=None,
    help="Worker processes (local) or LocalCluster workers (dask); default: CPU count.",
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
) -> None:
    """Score a large table in chunks with a packaged model, on this machine or on Dask.

    Rows that cannot be parsed or scored go to a rejects file with the error. An interrupted
    job resumes: run the same command again and finished chunks are not scored twice.
    """
    import os

    from mlops_ci.extras import require

    require("batch", "mlops-ci batch-score")
    workers = processes or os.cpu_count() or 1
    if engine == "local" and workers > 1:
        from mlops_ci.batch.workers import start_fork_server

        start_fork_server(also=[__name__])  # its imports overlap ours; workers rerun our script
    from mlops_ci.progress import RowProgress
    from mlops_ci.steps.batch_score import batch_score as batch_step

    spec = _batch_model(config_path, model_ref, model_dir)
    echo(
        f"scoring {input_path} with {spec.name} v{spec.version} ({spec.format}), "
        f"engine {engine}, {workers} worker(s)"
    )
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
        )
    if result.resumed:
        echo(f"resumed: {result.resumed} of {result.tasks} chunks were already scored")
    echo(
        f"{result.rows:,} rows: {result.scored:,} scored, {result.rejected:,} rejected "
        f"({result.reject_rate:.2%}) in {result.seconds:.1f}s = {result.rows_per_s:,.0f} rows/s"
    )
    echo(f"output: {result.output}" + (f"; rejects: {result.rejects}" if result.rejects else ""))


def _batch_model(config_path: Path | None, ref: str | None, model_dir: Path | None) -> Any:
    from mlops_ci.serve.model import read_spec

    if (ref is None) == (model_dir is None):
        raise MlopsError("give --model NAME@ALIAS (or NAME:VERSION) or --model-dir, one of them")
    if model_dir is not None:
        return read_spec(model_dir)
    from mlops_ci.serve.server import Weighted, from_registry

    config = _load(config_path)
    assert ref is not None
    if "@" in ref:
        name, _, alias = ref.partition("@")
        version = "@" + alias
    elif ":" in ref:
        name, _, version = ref.partition(":")
    else:
        name, version = "", ref
    name = name or config.model.name
    state = config.root / ".mlops" / "batch"
    ((spec, _),) = from_registry(_open(config), name, [Weighted(version, None)], state)
    return spec


@cli.command()
@CONFIG_OPTION
@click.option(
    "--pr",
    default=None,
    metavar="NUMBER|auto",
    help="Post the report as a sticky comment on this pull request "
    "(auto: the PR of the triggering event).",
)
@click.option(
    "--repo",
    default=None,
    metavar="OWNER/NAME",
    help="Repository of the pull request (default: GITHUB_REPOSITORY).",
)
@click.option(
    "--workflow",
    default=None,
    help="Name that keeps this workflow's comment apart (default: GITHUB_WORKFLOW).",
)
@click.option(
    "--post-saved",
    "saved_dir",
    type=click.Path(path_type=Path),
    default=None,
    help="Post a report a fork's run saved (workflow_run jobs); needs --expect-head-sha.",
)
@click.option(
    "--expect-head-sha",
    default=None,
    help="With --post-saved: the PR's head commit must be this (the run's head_sha).",
)
def report(
    config_path: Path | None,
    pr: str | None,
    repo: str | None,
    workflow: str | None,
    saved_dir: Path | None,
    expect_head_sha: str | None,
) -> None:
    """Render the job's report (.mlops/report.md) and publish it.

    Verdict first, metrics with the bootstrap interval, a mermaid chart, checks and lineage.
    Appends it to the GitHub job summary when GITHUB_STEP_SUMMARY is set; with --pr, posts
    it as one pull-request comment that later runs update in place. A token that cannot
    comment (a fork's pull request) saves it under .mlops/pr-comment/ for a workflow_run job.
    """
    import os

    from mlops_ci.ci import emit_outputs, write_summary
    from mlops_ci.ci.github import GithubSettings

    settings = GithubSettings.from_env(os.environ)
    if repo:
        settings = GithubSettings(settings.token, settings.api_url, repo)
    if saved_dir is not None:
        _post_saved(settings, saved_dir, expect_head_sha)
        return

    from mlops_ci.steps.report import report as report_step

    config = _load(config_path)
    name = workflow or os.environ.get("GITHUB_WORKFLOW", "local")
    built = report_step(config, _open(config), name)
    echo(f"report: {built.path} (verdict {built.verdict})")
    if write_summary(built.markdown):
        echo("added to the job summary")
    outputs = {"report-path": str(built.path), "verdict": built.verdict}
    emit_outputs(outputs)  # now: a comment that cannot be posted must not lose them
    outputs = {}
    if pr is not None:
        from mlops_ci.ci.azure import AzureSettings

        azure = AzureSettings.from_env(os.environ) if os.environ.get("TF_BUILD") else None
        if azure is not None and azure.provider == "TfsGit":
            outputs.update(_post_azure_thread(azure, pr, built))
        else:
            if azure is not None:  # a GitHub repository built in Azure Pipelines
                settings = GithubSettings(
                    settings.token,
                    settings.api_url,
                    settings.repository or os.environ.get("BUILD_REPOSITORY_NAME"),
                )
            outputs.update(_post_github_comment(settings, pr, built))
    emit_outputs(outputs)


def _post_github_comment(settings: Any, pr: str, built: Any) -> dict[str, str]:
    import os

    from mlops_ci.ci.github import GithubClient, event_pr

    number = event_pr(os.environ) if pr == "auto" else _pr_number(pr)
    if number is None and pr == "auto" and os.environ.get("TF_BUILD"):
        given = os.environ.get("SYSTEM_PULLREQUEST_PULLREQUESTNUMBER", "")
        number = int(given) if given.isdigit() else None
    if number is None:
        raise MlopsError(
            "--pr auto: this run was not triggered by a pull request",
            hint="pass --pr NUMBER, or drop --pr outside pull requests",
        )
    if not settings.token:  # the step keeps going: the report is written, its outputs set
        from mlops_ci.ci.github import save_for_artifact

        folder = built.path.parent / "pr-comment"
        save_for_artifact(folder, settings.repository or "", number, built.comment_body(),
                          built.marker)  # fmt: skip
        advice = (
            "report --pr: no GITHUB_TOKEN, so no comment was posted; give the job "
            "`permissions: pull-requests: write` and the report step `github-token: "
            f"${{{{ github.token }}}}` (env GITHUB_TOKEN); the comment is saved in {folder}"
        )
        _warn(advice)
        return {"saved-comment": str(folder)}
    outcome = GithubClient(settings).upsert_comment(
        number, built.comment_body(), built.marker, built.path.parent / "pr-comment"
    )
    if outcome.action == "saved":
        echo(
            f"warning: {outcome.reason}; saved to {outcome.saved_to} for a workflow_run job to post"
        )
        return {"saved-comment": str(outcome.saved_to)}
    echo(f"{outcome.action} comment on #{number}: {outcome.url}")
    return {"comment-url": outcome.url or ""}


def _post_azure_thread(settings: Any, pr: str, built: Any) -> dict[str, str]:
    """The report as one Azure Repos pull-request thread."""
    import os

    from mlops_ci.ci.azure import AzureReposClient

    given = os.environ.get("SYSTEM_PULLREQUEST_PULLREQUESTID", "") if pr == "auto" else pr
    if not given.isdigit():
        raise MlopsError(
            "--pr auto: this run was not triggered by a pull request",
            hint="pass --pr NUMBER, or drop --pr outside pull requests",
        )
    outcome = AzureReposClient(settings).upsert_thread(
        int(given), built.comment_body(), built.marker
    )
    echo(f"{outcome.action} thread on pull request {outcome.pr}: {outcome.url}")
    return {"comment-url": outcome.url}


def _post_saved(settings: Any, saved_dir: Path, expect_head_sha: str | None) -> None:
    """Post a fork's saved report, only onto the PR whose head is the run's commit."""
    from mlops_ci.ci.github import GithubClient, load_saved

    if not expect_head_sha:
        raise MlopsError("--post-saved needs --expect-head-sha (the workflow_run head_sha)")
    number, body, marker = load_saved(saved_dir)
    client = GithubClient(settings)
    head = client.pull_head_sha(number)
    if head != expect_head_sha:
        raise MlopsError(
            f"saved report names PR #{number}, whose head {head[:12]} is not the run's "
            f"{expect_head_sha[:12]}; not posting"
        )
    outcome = client.upsert_comment(number, body, marker, saved_dir)
    echo(f"{outcome.action} comment on #{number}: {outcome.url}")


def _pr_number(text: str) -> int:
    if not text.isdigit():
        raise MlopsError(f"--pr '{text}': expected a pull request number or 'auto'")
    return int(text)


@cli.command()
@click.option(
    "--dir",
    "folder",
    type=click.Path(path_type=Path),
    default=None,
    help="Empty folder to run in (default: a new temporary folder, kept afterwards).",
)
def demo(folder: Path | None) -> None:
    """Run the iris example end to end: train, compare, register, promote, then a changed model.

    Uses the embedded registry (MLflow on SQLite in the folder), no network and no server.
    """
    from mlops_ci.explain import markdown
    from mlops_ci.steps.pipeline import run_demo

    dest = folder or Path(tempfile.mkdtemp(prefix="mlops-ci-demo-"))
    echo(f"demo project: {dest}")
    result = run_demo(dest)
    first, second = result.first, result.second
    echo(f"\n[1] trained run {first.train.run_id}")
    echo(markdown(first.comparison))
    assert first.registered is not None
    echo(
        f"registered {first.registered.name} v{first.registered.version}; "
        f"promoted: alias '{result.promoted.alias}' -> v{result.promoted.version}"
    )
    change = ", ".join(f"{k}={v}" for k, v in result.change.items())
    echo(f"\n[2] retrained with {change}: run {second.train.run_id}")
    echo(markdown(second.comparison))
    if second.registered is not None:
        echo(
            f"registered {second.registered.name} v{second.registered.version} "
            f"(alias '{second.registered.alias}')"
        )
    else:
        echo(f"refused: {second.refused}")
    echo(f"\ncomparison: {result.project / '.mlops' / 'comparison.md'}")
    echo(f"registry:   {result.registry}")
    echo(f"browse:     mlflow ui --backend-store-uri {result.registry}")


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the CLI and turn errors into one line and an exit code."""
    args = sys.argv[1:] if argv is None else argv
    if argv is None:  # this process is the command (not a caller's, such as a test's)
        _defer_gc()
    debug = "--debug" in args
    try:
        cli.main(args=args, prog_name="mlops-ci", standalone_mode=False)
    except click.exceptions.Abort:
        echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as err:
        shown = io.StringIO()
        err.show(file=shown)  # usage and "Error: ...", which may quote what was typed
        echo(shown.getvalue().rstrip("\n"), err=True)
        sys.exit(2)
    except MlopsError as err:
        if debug:
            traceback.print_exc()
        from mlops_ci.ci import error_annotations

        for command in error_annotations(err):
            click.echo(command)
        lines = err.problems if isinstance(err, ConfigError) else [str(err)]
        for line in lines:
            echo(f"error: {single_line(line)}", err=True)
        if err.hint:
            echo(f"hint: {single_line(err.hint)}", err=True)
        sys.exit(err.exit_code)
    except Exception as err:  # a bug in mlops-ci, not the user's input
        if debug:
            traceback.print_exc()
        echo(f"internal error: {type(err).__name__}: {single_line(err)}", err=True)
        echo("hint: rerun with --debug for the traceback and report it", err=True)
        sys.exit(INTERNAL_ERROR)
