"""report: the comparison, package and deploy records as a PR comment and job summary."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from mlops_ci.cli.common import CONFIG_OPTION, load, open_registry, warn
from mlops_ci.errors import MlopsError
from mlops_ci.ui.printable import echo


@click.command()
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

    config = load(config_path)
    name = workflow or os.environ.get("GITHUB_WORKFLOW", "local")
    built = report_step(config, open_registry(config), name)
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
            outputs.update(_post_github_comment(settings, pr, built, config.root))
    emit_outputs(outputs)


def _post_github_comment(settings: Any, pr: str, built: Any, root: Path) -> dict[str, str]:
    import os

    from mlops_ci.ci.github import GithubClient, event_pr
    from mlops_ci.records import JobFolder

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

        folder = JobFolder(root).pr_comment
        save_for_artifact(folder, settings.repository or "", number, built.comment_body(),
                          built.marker)  # fmt: skip
        advice = (
            "report --pr: no GITHUB_TOKEN, so no comment was posted; give the job "
            "`permissions: pull-requests: write` and the report step `github-token: "
            f"${{{{ github.token }}}}` (env GITHUB_TOKEN); the comment is saved in {folder}"
        )
        warn(advice)
        return {"saved-comment": str(folder)}
    outcome = GithubClient(settings).upsert_comment(
        number, built.comment_body(), built.marker, JobFolder(root).pr_comment
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
