"""Azure Repos: the report as one pull-request thread, updated in place.

The thread is found again by the hidden marker in its first comment and its author, the build
identity (``_apis/connectionData``), as on GitHub. Calls go to
the Azure DevOps REST API (``/_apis/git/repositories/{repo}/pullRequests/{pr}/threads``,
api-version 7.1) with ``System.AccessToken`` as a bearer token; 429 and 5xx are retried with
backoff, honouring ``Retry-After``. The token is never printed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from mlops_ci.ci.retry import create_once
from mlops_ci.errors import InputError, ServiceError
from mlops_ci.report import markdown as md

API_VERSION = "7.1"
CONNECTION_API_VERSION = "7.1-preview.1"  # _apis/connectionData has only preview versions
COMMENT_LIMIT = 150_000  # Azure DevOps refuses longer comment content


@dataclass(frozen=True)
class AzureSettings:
    token: str | None
    collection_uri: str  # https://dev.azure.com/ORG/
    project: str
    repository_id: str
    provider: str  # TfsGit (Azure Repos) | GitHub | ...

    @staticmethod
    def from_env(env: Mapping[str, str]) -> AzureSettings:
        return AzureSettings(
            token=env.get("SYSTEM_ACCESSTOKEN") or None,
            collection_uri=(env.get("SYSTEM_COLLECTIONURI") or "").rstrip("/") + "/",
            project=env.get("SYSTEM_TEAMPROJECT") or env.get("SYSTEM_TEAMPROJECTID") or "",
            repository_id=env.get("BUILD_REPOSITORY_ID") or "",
            provider=env.get("BUILD_REPOSITORY_PROVIDER") or "",
        )


@dataclass(frozen=True)
class RunApproval:
    """One approver's yes to a check of a pipeline run."""

    by: str  # display name (unique name)
    comment: str
    at: str | None


@dataclass(frozen=True)
class ThreadOutcome:
    action: str  # created | updated
    pr: int
    thread_id: int
    url: str


class AzureReposClient:
    def __init__(self, settings: AzureSettings, retries: int = 5, backoff: float = 0.5) -> None:
        import requests
        from requests.adapters import HTTPAdapter
        from urllib3.util.retry import Retry

        if not settings.token:
            raise InputError(
                "SYSTEM_ACCESSTOKEN is not set",
                hint="map it in the step: `env: {SYSTEM_ACCESSTOKEN: $(System.AccessToken)}`",
            )
        if not (settings.collection_uri.strip("/") and settings.project and settings.repository_id):
            raise InputError(
                "Azure Repos: SYSTEM_COLLECTIONURI, SYSTEM_TEAMPROJECT and BUILD_REPOSITORY_ID "
                "are needed (set by Azure Pipelines)"
            )
        self.settings = settings

        retry = create_once(Retry, 429)(
            total=retries,
            backoff_factor=backoff,
            status_forcelist=(429, 500, 502, 503, 504),
            allowed_methods={"GET", "PATCH", "DELETE"},  # POST: see create_once
            respect_retry_after_header=True,
            raise_on_status=False,
        )
        self._identity: str | None = None
        self._http = requests.Session()
        self._http.mount("http://", HTTPAdapter(max_retries=retry))
        self._http.mount("https://", HTTPAdapter(max_retries=retry))
        self._http.headers.update(
            {"Authorization": f"Bearer {settings.token}", "Accept": "application/json"}
        )
        s = settings
        self._base = (
            f"{s.collection_uri}{quote(s.project)}/_apis/git/repositories/"
            f"{quote(s.repository_id)}/pullRequests"
        )

    def upsert_thread(self, pr: int, body: str, marker: str) -> ThreadOutcome:
        """Edit the first comment of this identity's thread carrying ``marker``, or start that
        thread. Threads started by anyone else are never touched, marker or not. A create is
        never retried blindly: after a failed POST the threads are read again, and the one
        Azure DevOps made before failing is the one kept (copies are deleted)."""
        content = md.fit(body, COMMENT_LIMIT, marker)
        me = self.identity()
        mine = self._marked(pr, marker, me)
        if mine:
            return self._keep_one(pr, mine, content, "updated")
        try:
            created = self._call(
                "POST",
                f"{pr}/threads",
                {
                    "comments": [{"parentCommentId": 0, "content": content, "commentType": 1}],
                    "status": "closed",  # informational: nothing for the author to resolve
                },
            )
        except ServiceError:
            mine = self._marked(pr, marker, me)  # did it land before the error?
            if not mine:
                raise
            return self._keep_one(pr, mine, content, "created")
        return ThreadOutcome("created", pr, int(created["id"]), self._url(pr, created))

    def identity(self) -> str:
        """The id of the identity the token acts as (the build service in a pipeline)."""
        if self._identity is None:
            url = f"{self.settings.collection_uri}_apis/connectionData"
            data = self._call("GET", url, version=CONNECTION_API_VERSION)
            found = (data.get("authenticatedUser") or {}).get("id")
            if not found:
                raise ServiceError(
                    f"Azure DevOps at {self.settings.collection_uri}: connectionData names no "
                    "authenticated user"
                )
            self._identity = str(found)
        return self._identity

    def run_approvals(self, build_id: str) -> list[RunApproval]:
        """Who approved the checks of a pipeline run (an environment's approvals): the run's
        timeline names its approval checkpoints, the approvals API their steps."""
        s = self.settings
        base = f"{s.collection_uri}{quote(s.project)}/_apis"
        timeline = self._call("GET", f"{base}/build/builds/{quote(build_id)}/timeline")
        ids = [
            str(r["id"])
            for r in timeline.get("records") or []
            if r.get("type") == "Checkpoint.Approval" and r.get("id")
        ]
        if not ids:
            return []
        found = self._call(
            "GET", f"{base}/pipelines/approvals?approvalIds={','.join(ids)}&$expand=steps"
        )
        approvals = []
        for approval in found.get("value") or []:
            for step in approval.get("steps") or []:
                who = step.get("actualApprover") or {}
                if step.get("status") == "approved" and who.get("displayName"):
                    unique = who.get("uniqueName")
                    name = f"{who['displayName']} ({unique})" if unique else who["displayName"]
                    approvals.append(
                        RunApproval(
                            name, str(step.get("comment") or ""), step.get("lastModifiedOn")
                        )
                    )
        return approvals

    def _marked(self, pr: int, marker: str, me: str) -> list[dict[str, Any]]:
        """This identity's live threads whose first comment carries the marker, oldest first."""
        found = []
        for thread in self._call("GET", f"{pr}/threads").get("value", []):
            comments = thread.get("comments") or []
            first = comments[0] if comments else {}
            author = (first.get("author") or {}).get("id")
            if (
                marker in (first.get("content") or "")
                and author == me
                and not thread.get("isDeleted")
                and not first.get("isDeleted")
            ):
                found.append(thread)
        return sorted(found, key=lambda t: int(t["id"]))

    def _keep_one(
        self, pr: int, mine: list[dict[str, Any]], content: str, action: str
    ) -> ThreadOutcome:
        keep, *strays = mine
        first = keep["comments"][0]
        if first.get("content") != content:
            path = f"{pr}/threads/{keep['id']}/comments/{first['id']}"
            self._call("PATCH", path, {"content": content})
        for stray in strays:  # a create that landed although its answer was an error
            self._call(
                "DELETE", f"{pr}/threads/{stray['id']}/comments/{stray['comments'][0]['id']}"
            )
        return ThreadOutcome(action, pr, int(keep["id"]), self._url(pr, keep))

    def _call(
        self, method: str, path: str, body: dict[str, Any] | None = None, version: str = API_VERSION
    ) -> Any:
        import requests

        url = path if "://" in path else f"{self._base}/{path}"
        try:
            answer = self._http.request(
                method, url, params={"api-version": version}, json=body, timeout=30
            )
        except requests.RequestException as err:
            raise ServiceError(
                f"Azure DevOps at {self.settings.collection_uri}: {type(err).__name__}",
                hint="retried with backoff; try again later",
            ) from None
        if answer.status_code >= 400:
            message = _message(answer)
            text = f"Azure DevOps {method} {path} answered {answer.status_code}: {message}"
            if answer.status_code in (401, 403):
                raise InputError(
                    text,
                    hint="give the build service 'Contribute to pull requests' on the repository",
                )
            raise ServiceError(text, hint="retried with backoff; try again later")
        return answer.json() if answer.content else {}

    def _url(self, pr: int, thread: Mapping[str, Any]) -> str:
        s = self.settings
        return (
            f"{s.collection_uri}{quote(s.project)}/_git/{quote(s.repository_id)}/pullrequest/"
            f"{pr}?discussionId={thread.get('id')}"
        )


def _message(answer: Any) -> str:
    try:
        return str(answer.json().get("message", ""))[:300]
    except ValueError:
        return str(answer.text)[:300]
