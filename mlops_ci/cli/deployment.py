"""The deployment verbs: deploy, approve, rollback, undeploy, status."""

from __future__ import annotations

from pathlib import Path

import click

from mlops_ci.cli.common import (
    CONFIG_OPTION,
    VERSION_OPTION,
    actor,
    by_option,
    load,
    notify,
    open_registry,
    who_and_why,
)
from mlops_ci.errors import MlopsError
from mlops_ci.ui.printable import echo

ENV_OPTION = click.option(
    "--env",
    "env_name",
    required=True,
    help="Deployment environment: a key of deploy in mlops.yaml (e.g. staging, production).",
)


@click.command()
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

    One deploy per environment at a time (a second is refused, exit 2). A deploy killed on the
    way is settled by the next deploy, status or rollback: finished if its version took all
    traffic and is healthy, else reverted. SIGTERM or SIGINT puts the split back and records a
    rollback (exit 143 or 130).
    """
    import os

    from mlops_ci.ci import emit_outputs
    from mlops_ci.errors import GateFailed
    from mlops_ci.steps.deploy import deploy as deploy_step

    config = load(config_path)
    result = deploy_step(
        config, open_registry(config), version, env_name, actor(by), os.environ, echo, dry_run
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
    if result.shadow:
        echo(
            f"shadow: v{result.shadow['version']} scores {result.shadow['percent']:g} % of "
            "requests unseen (input log; `mlops-ci quality` judges it)"
        )
    emit_outputs({"deploy-status": result.status, "url": where, "model_version": result.version})
    notify(
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


@click.command()
@CONFIG_OPTION
@VERSION_OPTION
@ENV_OPTION
@who_and_why("approves")
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

    config = load(config_path)
    source, at = "mlops-ci approve", None
    if from_azure_run:
        by, reason, at = _azure_run_approver(reason)
        source = "azure environment check"
    number, approval = approve_step(
        config, open_registry(config), version, env_name, actor(by), reason, source, at
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


@click.command()
@CONFIG_OPTION
@ENV_OPTION
@who_and_why("rolls back")
def rollback(config_path: Path | None, env_name: str, by: str | None, reason: str) -> None:
    """Put the version an environment served before back at 100 % and move its alias back."""
    from mlops_ci.steps.rollback import rollback as rollback_step

    config = load(config_path)
    result = rollback_step(
        config, open_registry(config), env_name, actor(by), reason, progress=echo
    )
    echo(
        f"{result.name} {result.env}: v{result.from_version} -> v{result.to_version} "
        f"(by {result.by}: {result.reason})"
    )


@click.command()
@CONFIG_OPTION
@ENV_OPTION
@who_and_why("undeploys", "the versions that served")
def undeploy(config_path: Path | None, env_name: str, by: str | None, reason: str) -> None:
    """Stop what an environment serves: the local process, the docker containers, or the
    kubernetes objects deploy applied. Records who and why; moves no alias (the next deploy
    starts it again)."""
    import os

    from mlops_ci.steps.undeploy import undeploy as undeploy_step

    config = load(config_path)
    result = undeploy_step(config, open_registry(config), env_name, actor(by), reason, os.environ)
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


@click.command()
@CONFIG_OPTION
def status(config_path: Path | None) -> None:
    """Show what runs where: per environment its alias, version, state and live split.

    A deploy a killed process left is settled first (finished or reverted, and said)."""
    from mlops_ci.steps.status import status as status_step

    config = load(config_path)
    for env in status_step(config, open_registry(config), progress=echo):  # says what it settled
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
        if env.deploying:
            line += f" — a deploy is running (pid {env.deploying})"
        echo(line)
