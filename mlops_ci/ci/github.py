"""GitHub: the sticky pull-request comment through PyGithub, and the fork-safe fallback.

One comment per model and workflow, found again by a hidden marker and edited in place.
Retries (5xx, primary and secondary rate limits with Retry-After / x-ratelimit-reset) are
PyGithub's ``GithubRetry``. A read-only token (a fork's pull request) cannot comment: the
report is then saved for an artifact, and the base repository's ``workflow_run`` workflow
posts it with ``mlops-ci report --post-saved``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlops_ci.ci.retry import create_once
from mlops_ci.errors import InputError, ServiceError
from mlops_ci.extras import require
from mlops_ci.records import write_json_atomic, write_text_atomic
from mlops_ci.report import markdown as md

if TYPE_CHECKING:
    from github.Repository import Repository

DEFAULT_API_URL = "https://api.github.com"
COMMENT_LIMIT = md.GITHUB_COMMENT_LIMIT
# Who an installation token of GitHub Actions (GITHUB_TOKEN) writes as.
ACTIONS_BOT = "github-actions[bot]"
SAVED_BODY = "body.md"
SAVED_META = "meta.json"
_MARKER = re.compile(r"^<!-- mlops-ci:report model=[A-Za-z0-9._-]+ workflow=[A-Za-z0-9 ._/-]* -->$")


@dataclass(frozen=True)
class CommentOutcome:
    action: str  # created | updated | saved
    pr: int
    comment_id: int | None = None
    url: str | None = None
    saved_to: Path | None = None
    reason: str | None = None


@dataclass(frozen=True)
class GithubSettings:
    token: str | None
    api_url: str
    repository: str | None  # owner/name
    comment_author: str | None = None  # the token's login, where GET /user cannot tell it

    @staticmethod
    def from_env(env: Mapping[str, str]) -> GithubSettings:
        return GithubSettings(
            token=env.get("GITHUB_TOKEN") or None,
            api_url=(env.get("GITHUB_API_URL") or DEFAULT_API_URL).rstrip("/"),
            repository=env.get("GITHUB_REPOSITORY") or None,
            comment_author=env.get("MLOPS_CI_COMMENT_AUTHOR") or None,
        )


class GithubClient:
    """The few GitHub calls mlops-ci makes, with timeouts, retries and clear errors."""

    def __init__(
        self,
        settings: GithubSettings,
        timeout: int = 15,
        retries: int = 5,
        seconds_between_requests: float = 0.25,
        seconds_between_writes: float = 1.0,
    ) -> None:
        require("github", "posting to GitHub")
        from github import Auth, Github
        from github.GithubRetry import GithubRetry
        from urllib3.util.retry import Retry

        if not settings.token:
            raise InputError(
                "GITHUB_TOKEN is not set", hint="pass `env: GITHUB_TOKEN: ${{ github.token }}`"
            )
        if not settings.repository:
            raise InputError("no repository: set GITHUB_REPOSITORY or pass --repo OWNER/NAME")
        self.settings = settings
        retry = create_once(GithubRetry, 403)(
            total=retries,
            backoff_factor=0.5,
            max_rate_limit_wait=600,
            # POST creates: see create_once (403 is GitHub's rate-limit answer).
            allowed_methods=Retry.DEFAULT_ALLOWED_METHODS | {"GET", "PATCH"},
        )
        self._gh = Github(
            auth=Auth.Token(settings.token),
            base_url=settings.api_url,
            timeout=timeout,
            retry=retry,
            seconds_between_requests=seconds_between_requests,
            seconds_between_writes=seconds_between_writes,
            lazy=True,
        )
        self._repo: Repository = self._gh.get_repo(settings.repository, lazy=True)
        self._identity: str | None = None

    def upsert_comment(self, pr: int, body: str, marker: str, fallback_dir: Path) -> CommentOutcome:
        """Edit this identity's comment carrying ``marker`` (deleting its stray copies) or
        create it. Comments by anyone else are never edited, even when they carry the marker.
        A create is never retried blindly: after a failed POST the comments are read again,
        and the one GitHub made before failing is the one kept."""
        from github.GithubException import GithubException
        from requests import RequestException

        body = md.fit(body, COMMENT_LIMIT, marker)
        try:
            issue = self._repo.get_issue(pr)
            me = self.identity()
            mine = self._marked(issue, marker, me)
            if mine:
                return CommentOutcome("updated", pr, *self._keep_one(mine, body))
            try:
                created = issue.create_comment(body)
            except (GithubException, RequestException) as err:
                if isinstance(err, GithubException) and (err.status or 0) < 500:
                    raise
                mine = self._marked(issue, marker, me)  # did it land before the error?
                if not mine:
                    raise
                return CommentOutcome("created", pr, *self._keep_one(mine, body))
            return CommentOutcome("created", pr, created.id, created.html_url)
        except GithubException as err:
            if err.status in (403, 404) and _is_permission_error(err):
                reason = f"the token cannot comment on #{pr} ({err.status}: {_message(err)})"
                saved = save_for_artifact(
                    fallback_dir, self.settings.repository or "", pr, body, marker
                )
                return CommentOutcome("saved", pr, saved_to=saved, reason=reason)
            raise self._error(err, f"commenting on pull request #{pr}") from None
        except RequestException as err:
            raise self._transport_error(err, f"commenting on pull request #{pr}") from None

    def identity(self) -> str:
        """The login the token writes as: an installation token (``ghs_``, as GITHUB_TOKEN is)
        writes as github-actions[bot] (another GitHub App's: set MLOPS_CI_COMMENT_AUTHOR to its
        bot login); any other token is asked GET /user, and one it refuses is taken for the
        Actions bot too."""
        from github.GithubException import GithubException

        if self.settings.comment_author:
            return self.settings.comment_author
        if (self.settings.token or "").startswith("ghs_"):
            return ACTIONS_BOT  # an installation token: GET /user would only answer 403
        if self._identity is None:
            try:
                self._identity = str(self._gh.get_user().login)
            except GithubException as err:
                if err.status not in (403, 404):
                    raise
                self._identity = ACTIONS_BOT
        return self._identity

    @staticmethod
    def _marked(issue: Any, marker: str, me: str) -> list[Any]:
        return [
            c
            for c in issue.get_comments()
            if marker in (c.body or "")
            and c.user is not None
            and c.user.login.lower() == me.lower()
        ]

    @staticmethod
    def _keep_one(mine: list[Any], body: str) -> tuple[int, str]:
        keep, *strays = mine
        if keep.body != body:
            keep.edit(body)
        for stray in strays:  # e.g. a create that landed although its answer was an error
            stray.delete()
        return keep.id, keep.html_url

    def pull_head_sha(self, pr: int) -> str:
        from github.GithubException import GithubException

        try:
            return str(self._repo.get_pull(pr).head.sha)
        except GithubException as err:
            raise self._error(err, f"reading pull request #{pr}") from None

    def run_approvals(self, run_id: int) -> list[dict[str, Any]]:
        """The deployment-review history of a workflow run (environment approvals)."""
        from github.GithubException import GithubException

        path = f"/repos/{self.settings.repository}/actions/runs/{run_id}/approvals"
        try:
            _, data = self._gh.requester.requestJsonAndCheck("GET", path)
        except GithubException as err:
            raise self._error(err, f"reading the approvals of run {run_id}") from None
        return [d for d in data if isinstance(d, dict)] if isinstance(data, list) else []

    def pull_approvers(self, pr: int) -> list[str]:
        """Logins whose latest review of the pull request approves it."""
        from github.GithubException import GithubException

        try:
            latest: dict[str, str] = {}
            for review in self._repo.get_pull(pr).get_reviews():
                if review.user is not None and review.state != "COMMENTED":
                    latest[review.user.login] = review.state
        except GithubException as err:
            raise self._error(err, f"reading the reviews of #{pr}") from None
        return sorted(login for login, state in latest.items() if state == "APPROVED")

    def repository_dispatch(self, event_type: str, payload: dict[str, Any]) -> None:
        """POST /repos/OWNER/NAME/dispatches, so a workflow `on: repository_dispatch` runs."""
        from github.GithubException import GithubException

        try:
            self._repo.create_repository_dispatch(event_type, {"event": payload})
        except GithubException as err:
            raise self._error(err, f"sending repository_dispatch {event_type}") from None

    def _transport_error(self, err: Exception, doing: str) -> ServiceError:
        """A request that got no usable answer (retries spent, connection lost): one line."""
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        reason = re.sub(r"\(Caused by .*", "", reason).strip()[:200]
        return ServiceError(
            f"GitHub API at {self.settings.api_url} failed {doing}: {type(err).__name__}: {reason}",
            hint="retried with backoff; try again later",
        )

    def _error(self, err: Any, doing: str) -> Exception:
        status = getattr(err, "status", None)
        text = f"GitHub API at {self.settings.api_url} failed {doing}: {status} {_message(err)}"
        if status == 401:
            return InputError(text, hint="GITHUB_TOKEN was rejected; check it is valid")
        return ServiceError(text, hint="retried with backoff; try again later")


def _message(err: Any) -> str:
    data = getattr(err, "data", None)
    if isinstance(data, dict) and data.get("message"):
        return str(data["message"])
    return str(data or "")[:200]


def _is_permission_error(err: Any) -> bool:
    """A read-only token: 403 'Resource not accessible', or 404 hiding a private repository."""
    message = _message(err).lower()
    return err.status == 404 or "not accessible" in message or "permission" in message


def save_for_artifact(folder: Path, repository: str, pr: int, body: str, marker: str) -> Path:
    """Write the comment and where it belongs, for a workflow_run job to post later."""
    write_text_atomic(folder / SAVED_BODY, body)
    write_json_atomic(folder / SAVED_META, {"repository": repository, "pr": pr, "marker": marker})
    return folder


def load_saved(folder: Path) -> tuple[int, str, str]:
    """(pr, body, marker) of a saved report; its contents come from a fork, so check them."""
    meta_path, body_path = folder / SAVED_META, folder / SAVED_BODY
    if not meta_path.is_file() or not body_path.is_file():
        raise InputError(f"{folder}: no saved report ({SAVED_META} and {SAVED_BODY} expected)")
    try:
        meta = json.loads(meta_path.read_text("utf-8"))
        pr, marker = int(meta["pr"]), str(meta["marker"])
    except (ValueError, KeyError, TypeError) as err:
        raise InputError(f"{meta_path}: malformed ({err})") from None
    if not _MARKER.match(marker):
        raise InputError(f"{meta_path}: marker is not an mlops-ci report marker")
    body = body_path.read_text("utf-8")
    if marker not in body:
        body = f"{body}\n{marker}\n"
    return pr, body, marker


def event_pr(env: Mapping[str, str]) -> int | None:
    """The pull request number of this workflow run, from the event payload or ref."""
    from mlops_ci.provenance import github_pr

    number = github_pr(env)
    return int(number) if number else None
