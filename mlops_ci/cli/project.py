"""The project verbs: init, validate, train, compare, and the demo that runs them all."""

from __future__ import annotations

import tempfile
from pathlib import Path

import click

from mlops_ci.cli.common import CONFIG_OPTION, load, notify, open_registry, timings_line
from mlops_ci.ui.printable import echo


@click.command()
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

    The starter's gate has one rule (the primary metric not worse than production's) and its
    commented keys show their defaults. Where it writes mlops.yaml it appends to .gitignore
    the lines it lacks: .mlops/ (the job's records, the embedded registry) and the training
    outputs' folder.

    With --from-dvc the starter takes its pipeline from an existing dvc.yaml (or keep that
    file as the source of truth instead: `pipeline: {dvc: dvc.yaml}` in mlops.yaml).
    """
    from mlops_ci.steps.init import init_project

    result = init_project(folder, ci, force, actions_repo, from_dvc)
    for path in result.written:
        echo(f"wrote {path}")
    for path in result.kept:
        echo(f"kept {path} (exists; --force overwrites)")
    if result.gitignore is not None:
        echo(f"added {', '.join(result.ignored)} to {result.gitignore}")
    echo("next: edit mlops.yaml, then run `mlops-ci validate`")


@click.command()
@CONFIG_OPTION
def validate(config_path: Path | None) -> None:
    """Check mlops.yaml against its schema and its meaning; print every problem with its line.

    Beyond the schema: metrics that fit model.task, gate rules on known or declared metrics,
    outputs that would overwrite what is read (train.inputs, evaluate.data), the pipeline's
    stages, the paths read before anything runs (evaluate.data unless a stage writes it, every
    train.inputs entry) and, when evaluate.data exists, its target and feature columns.
    """
    from mlops_ci.steps.validate import validate as validate_step

    config = load(config_path)
    validate_step(config)
    echo(f"{config.path}: valid (model {config.model.name})")


@click.command()
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
@click.option(
    "--model",
    "handed",
    type=click.Path(path_type=Path),
    metavar="PATH",
    help="Record a model trained elsewhere (a model file, or an MLflow model folder) as the "
    "candidate run, evaluated like a trained one; no command runs, and mlops.yaml needs no "
    "train section. Lineage says it was handed in, its sha256 and by whom.",
)
def train(
    config_path: Path | None,
    params: tuple[str, ...],
    no_cache: bool,
    dry_run: bool,
    handed: Path | None,
) -> None:
    """Run the training command and record the run, params, metrics, model and lineage in MLflow.

    When code/data inputs, params and environment match an earlier successful run, that run
    is reused instead of retraining. Prints the run id (also a `run_id` step output in CI).

    With pipeline.stages (or pipeline.dvc: a DVC dvc.yaml) the stages run in order, each
    skipped when its command, deps, params and environment are unchanged: its outs are then
    restored from .mlops/cache, or from the MLflow run that holds them on a fresh checkout.

    The command runs the pull request's code: in a bubblewrap sandbox where bwrap works
    (train.isolation: auto, required or off), which sees no process of mlops-ci and writes
    only to the project and a TMPDIR of its own, and with no credential in its environment:

    \b
    removed are GITHUB_TOKEN, GH_TOKEN, ACTIONS_RUNTIME_TOKEN, ACTIONS_ID_TOKEN_REQUEST_TOKEN,
    ACTIONS_ID_TOKEN_REQUEST_URL, SYSTEM_ACCESSTOKEN, AZURE_DEVOPS_EXT_PAT,
    MLFLOW_TRACKING_TOKEN, MLFLOW_TRACKING_USERNAME, MLFLOW_TRACKING_PASSWORD,
    MLFLOW_TRACKING_CLIENT_CERT_PATH, DATABRICKS_TOKEN, DATABRICKS_CLIENT_SECRET,
    MLOPS_ADMIN_TOKEN, every INPUT_* and SECRET_* (action inputs, Azure secret variables),
    the variable serve.admin_token_env names and every
    notify.webhooks[].secret_env; MLFLOW_TRACKING_URI and
    MLFLOW_REGISTRY_URI stay without user:password@ and secret query values.

    With --model PATH a model trained elsewhere is recorded instead (see --model).
    """
    from mlops_ci.ci import emit_outputs
    from mlops_ci.cli.signals import terminated_by_signals
    from mlops_ci.registry import TAG_ISOLATION
    from mlops_ci.steps.train import parse_overrides
    from mlops_ci.steps.train import train as train_step
    from mlops_ci.ui.progress import StepProgress

    if handed is not None and (params or dry_run):
        raise click.UsageError("--model records a model as it is: no --param or --dry-run")
    config = load(config_path)
    registry = open_registry(config)
    if dry_run:
        from mlops_ci.steps.train import dry_run as plan

        for stage in plan(config, registry, parse_overrides(params), use_cache=not no_cache):
            echo(f"{stage.name}: {stage.state} ({stage.why})")
        return
    with terminated_by_signals(), StepProgress({"importance": "features"}) as progress:
        if handed is not None:
            from mlops_ci.steps.handin import hand_in

            result = hand_in(
                config, registry, handed, not no_cache, progress=progress,
                notify=lambda line: echo(line, err=True),
            )  # fmt: skip
        else:
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
        if handed is not None:
            tags, sha = result.tags, result.tags.get("mlops.model.sha256", "")[:12]
            by = tags.get("mlops.model.handed_in_by")
            echo(f"handed in {tags.get('mlops.model.source')} (sha256 {sha}) by {by}")
        echo(f"{timings_line(result.timings)}; logged run {result.run_id}")
        if TAG_ISOLATION in result.tags:
            echo(f"training command: {result.tags[TAG_ISOLATION]}")
        if result.importance_note:
            echo(f"importance: {result.importance_note}")
    for name, value in sorted(result.metrics.items()):
        if not name.startswith("stage."):  # each stage's seconds: said above
            echo(f"  {name} = {value:.4f}")
    echo(f"run_id={result.run_id}")
    emit_outputs({"run_id": result.run_id, "cached": str(result.cached).lower()})
    notify(
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


@click.command()
@CONFIG_OPTION
@click.option("--run", "run_id", default=None, help="Candidate run id (default: the last `train`).")
def compare(config_path: Path | None, run_id: str | None) -> None:
    """Score the candidate and the production model on the same evaluation data and apply the gate.

    Writes .mlops/comparison.json and .mlops/comparison.md. Exit 0 on pass or no-baseline,
    1 when the gate fails.
    """
    from mlops_ci.ci import emit_outputs
    from mlops_ci.errors import GateFailed
    from mlops_ci.evaluation.comparison import FAIL
    from mlops_ci.report.comparison import markdown
    from mlops_ci.steps.compare import compare as compare_step
    from mlops_ci.ui.progress import StepProgress

    config = load(config_path)
    registry = open_registry(config)
    with StepProgress({"importance": "features", "cost": "rounds"}) as progress:
        result = compare_step(config, registry, run_id, progress)
    echo(markdown(result, config.evaluate.importance.top))
    if result.evaluation.get("model_runner"):
        echo(f"model runner: {result.evaluation['model_runner']}")
    reused = result.evaluation.get("importance_reused") or []
    for role, found in result.importance.items():
        if found.plan is not None:
            how = " (train's, reused)" if role in reused else ""
            note = f": {found.plan.note}" if found.plan.note else ""
            echo(f"importance of the {role}: {found.plan.seconds:.1f} s{how}{note}")
    emit_outputs({"verdict": result.verdict, "run_id": result.candidate.run_id or ""})
    notify(
        config,
        "model.compared",
        f"runs/{result.candidate.run_id}",
        {"model": config.model.name, "run_id": result.candidate.run_id, "verdict": result.verdict},
    )
    if result.verdict == FAIL:
        raise GateFailed(
            f"verdict fail for run {result.candidate.run_id}; see .mlops/comparison.md"
        )


@click.command()
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
    from mlops_ci.records import JobFolder
    from mlops_ci.report.comparison import markdown
    from mlops_ci.steps.demo import run_demo

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
    echo(f"\ncomparison: {JobFolder(result.project).comparison_md}")
    echo(f"registry:   {result.registry}")
    echo(f"versions:   mlops-ci versions -c {result.project}")
    echo(f"browse:     {browse_hint(result.registry)}")


def browse_hint(registry: str) -> str:
    """How to browse ``registry`` in MLflow's UI. The UI (flask, the server) is in the full
    mlflow package, not in the mlflow-skinny mlops-ci installs: then what to install first, at
    the version of the installed mlflow-skinny (so pip changes nothing else)."""
    from importlib import metadata, util

    command = f"mlflow ui --backend-store-uri {registry}"
    try:
        metadata.version("mlflow")
        if util.find_spec("flask") is not None:
            return command
    except metadata.PackageNotFoundError:
        pass
    try:
        pin = f"mlflow=={metadata.version('mlflow-skinny')}"
    except metadata.PackageNotFoundError:
        pin = "mlflow"
    return f"pip install '{pin}' (the UI is not in mlflow-skinny), then {command}"
