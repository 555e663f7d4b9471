"""The gates a deployment passes: a passed comparison, and an approval where one is required.

An approval is either recorded on the model version by `mlops-ci approve` (who, when, why), or,
in GitHub Actions, read from the run's deployment-review history (the environment's required
reviewers approved this job) and, where configured, an approved review of the pull request.
Either way it ends up recorded on the version as ``mlops.approval.ENV.*``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mlops_ci.config.types import DeployEnv
from mlops_ci.registry import TAG_VERDICT, VersionRecord

PASSING_VERDICTS = ("pass", "no-baseline")


@dataclass(frozen=True)
class Gate:
    name: str  # comparison | approval | pr-review
    passed: bool
    detail: str


@dataclass(frozen=True)
class Approval:
    by: str
    at: str
    reason: str
    source: str  # mlops-ci approve | github environment | github pull-request review

    def tags(self, env: str) -> dict[str, str]:
        prefix = f"mlops.approval.{env}."
        return {
            prefix + "by": self.by,
            prefix + "at": self.at,
            prefix + "reason": self.reason,
            prefix + "source": self.source,
        }


def now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def recorded_approval(version: VersionRecord, env: str) -> Approval | None:
    prefix = f"mlops.approval.{env}."
    tags = version.tags
    if not tags.get(prefix + "by"):
        return None
    return Approval(
        tags[prefix + "by"],
        tags.get(prefix + "at", ""),
        tags.get(prefix + "reason", ""),
        tags.get(prefix + "source", "mlops-ci approve"),
    )


def comparison_gate(version: VersionRecord) -> Gate:
    verdict = version.tags.get(TAG_VERDICT)
    if verdict in PASSING_VERDICTS:
        return Gate("comparison", True, f"verdict {verdict}")
    why = f"verdict {verdict}" if verdict else "no comparison recorded"
    return Gate("comparison", False, f"v{version.version}: {why} (needs pass or no-baseline)")


def github_approval(env: DeployEnv, environ: Mapping[str, str]) -> Approval | None:
    """The approval of this workflow run for the environment, from GitHub's review history."""
    run_id = environ.get("GITHUB_RUN_ID")
    if environ.get("GITHUB_ACTIONS") != "true" or not run_id or not run_id.isdigit():
        return None
    from mlops_ci.ci.github import GithubClient, GithubSettings

    client = GithubClient(GithubSettings.from_env(environ))
    for review in client.run_approvals(int(run_id)):
        names = {e.get("name") for e in review.get("environments", [])}
        if review.get("state") == "approved" and env.github_environment in names:
            return Approval(
                str(review.get("user", {}).get("login", "unknown")),
                str(review.get("created_at") or now_iso()),
                str(review.get("comment") or f"approved the {env.github_environment} environment"),
                "github environment",
            )
    return None


def pr_review_gate(environ: Mapping[str, str]) -> Gate:
    from mlops_ci.ci.github import GithubClient, GithubSettings, event_pr

    pr = event_pr(environ)
    if pr is None:
        return Gate("pr-review", False, "not running for a pull request; no review to check")
    approvers = GithubClient(GithubSettings.from_env(environ)).pull_approvers(pr)
    if approvers:
        return Gate("pr-review", True, f"#{pr} approved by {', '.join(approvers)}")
    return Gate("pr-review", False, f"#{pr} has no approving review")


def live_gate(record: Any, version: str, serving: str | None, min_rows: int) -> Gate:
    """deploy.ENV.require_live: `quality`'s live comparison (.mlops/quality.json) judged
    ``version`` as the shadow of the version serving now, passing, on ``min_rows`` or more
    paired labelled rows. A comparison against another version than serves now is stale."""
    comparison = record.get("comparison") if isinstance(record, dict) else None
    if not isinstance(comparison, dict) or not comparison:
        why = "no live comparison (.mlops/quality.json): serve it as the shadow, then run "
        return Gate("live", False, why + "`mlops-ci quality --labels FILE`")
    judged, against = str(comparison.get("candidate")), str(comparison.get("production"))
    rows, verdict = comparison.get("rows"), comparison.get("verdict")
    rows = rows if isinstance(rows, int) else 0
    if judged != version:
        return Gate("live", False, f"the live comparison judged v{judged}, not v{version}")
    if serving is not None and against != serving:
        return Gate(
            "live",
            False,
            f"stale: the live comparison was against v{against}; v{serving} serves now",
        )
    detail = f"v{version} against v{against} on {rows:,} labelled rows: {verdict}"
    if verdict != "pass":
        return Gate("live", False, detail)
    if rows < min_rows:
        return Gate("live", False, f"{detail}, but {min_rows:,} rows are required")
    return Gate("live", True, detail)


def check_gates(
    version: VersionRecord, env: DeployEnv, environ: Mapping[str, str]
) -> tuple[list[Gate], Approval | None]:
    """Every gate of ``env`` for ``version``; the approval found, if any."""
    gates: list[Gate] = []
    if env.require_comparison:
        gates.append(comparison_gate(version))
    approval = None
    if env.approval == "required":
        approval = recorded_approval(version, env.name) or github_approval(env, environ)
        if approval is not None:
            detail = f"by {approval.by} at {approval.at} ({approval.source}): {approval.reason}"
            gates.append(Gate("approval", True, detail))
        else:
            gates.append(
                Gate(
                    "approval",
                    False,
                    f"'{env.name}' needs an approval: `mlops-ci approve --version "
                    f"{version.version} --env {env.name} --by NAME --reason ...`, or run the job "
                    f"in the GitHub environment '{env.github_environment}' with required reviewers",
                )
            )
    if env.require_pr_review:
        gates.append(pr_review_gate(environ))
    return gates, approval
