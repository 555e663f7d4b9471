"""Azure Repos: the report as one pull-request thread, updated in place.

The thread is found again by the hidden marker in its first comment, as on GitHub. Calls go to
the Azure DevOps REST API (``/_apis/git/repositories/{repo}/pullRequests/{pr}/threads``,
api-version 7.1) with ``System.AccessToken`` as a bearer token; 429 and 5xx are retried with
backoff, honouring ``Retry-After``. The token is never printed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from mlops_ci.errors import InputError, ServiceError

API_VERSION = "7.1"
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
        retry = Retry(
            total=retries,
            backoff_factor=backoff,
            status_forcelist=(429, 500, 502, 503, 504),
            allowed_methods={"GET", "POST", "PATCH"},
            respect_retry_after_header=True,
            raise_on_status=False,
        )
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
        """Edit the first comment of the thread carrying ``marker``, or start that thread."""
        content = _cut(body)
        threads = self._call("GET", f"{pr}/threads").get("value", [])
        for thread in threads:
            comments = thread.get("comments") or []
            first = comments[0] if comments else {}
            if marker in (first.get("content") or "") and not thread.get("isDeleted"):
                self._call(
                    "PATCH",
                    f"{pr}/threads/{thread['id']}/comments/{first['id']}",
                    {"content": content},
                )
                return ThreadOutcome("updated", pr, int(thread["id"]), self._url(pr, thread))
        created = self._call(
            "POST",
            f"{pr}/threads",
            {
                "comments": [{"parentCommentId": 0, "content": content, "commentType": 1}],
                "status": "closed",  # informational: nothing for the author to resolve
            },
        )
        return ThreadOutcome("created", pr, int(created["id"]), self._url(pr, created))

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        import requests

        url = f"{self._base}/{path}"
        try:
            answer = self._http.request(
                method, url, params={"api-version": API_VERSION}, json=body, timeout=30
            )
        except requests.RequestException as err:
            raise ServiceError(
                f"Azure DevOps at {self.settings.collection_uri}: {type(err).__name__}"
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


def _cut(body: str) -> str:
    if len(body) <= COMMENT_LIMIT:
        return body
    note = "\n\n… cut: the full report is in the run's artifacts (.mlops/report.md)."
    return body[: COMMENT_LIMIT - len(note)] + note
