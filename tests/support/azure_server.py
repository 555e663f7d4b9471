"""A loopback Azure DevOps server speaking the REST shapes mlops-ci uses: connectionData (the
build identity), a run's timeline and its environment approvals, and an Azure Repos pull
request's threads (list, create, edit, delete a comment), with injectable faults."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

from tests.support.loopback import RestHandler


class AzureState:
    ME = "a1b2c3d4-0000-4000-8000-build5ervice"  # the build identity the token acts as

    def __init__(self) -> None:
        self.threads: dict[int, dict[str, Any]] = {}
        self.fail_next: list[int] = []
        # (method, status): handle the next request of that method for real, then answer status
        self.fail_after: list[tuple[str, int]] = []
        self.timeline: list[dict[str, Any]] = []  # records of run 77
        self.approvals: dict[str, dict[str, Any]] = {}  # approval id -> approval
        self.requests: list[tuple[str, str, int]] = []
        self.auth: set[str] = set()

    def add_thread(self, content: str, author: str) -> int:
        """A thread someone else started."""
        tid = len(self.threads) + 1
        comment = {"id": 1, "content": content, "author": {"id": author}}
        self.threads[tid] = {"id": tid, "comments": [comment], "status": "active"}
        return tid


@contextmanager
def azure_devops_server() -> Iterator[tuple[str, AzureState]]:
    """The Azure DevOps REST answers mlops-ci reads and writes, on loopback: (the collection
    URL, the state)."""
    state = AzureState()
    prefix = "/acme/ml%20project/_apis/git/repositories/repo-1/pullRequests/"

    class Handler(RestHandler):
        def _answer(
            self, status: int, body: Any = None, headers: dict[str, str] | None = None
        ) -> None:
            data = json.dumps(body).encode() if body is not None else b""
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(data)

        def _handle(self, method: str) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            payload = json.loads(self.rfile.read(length)) if length else None
            path, _, query = self.path.partition("?")
            state.auth.add(self.headers.get("Authorization", ""))
            status = self._route(method, path, query, payload)
            state.requests.append((method, path, status))

        def _route(self, method: str, path: str, query: str, payload: Any) -> int:
            if state.fail_next:
                status = state.fail_next.pop(0)
                self._answer(status, {"message": "busy"}, {"Retry-After": "0"})
                return status
            if state.fail_after and state.fail_after[0][0] == method:
                _, status = state.fail_after.pop(0)
                real = self._answer
                self._answer = lambda *_a, **_k: None  # type: ignore[method-assign]
                try:
                    self._real(method, path, query, payload)
                finally:
                    self._answer = real  # type: ignore[method-assign]
                self._answer(status, {"message": "gateway timeout"})
                return status
            return self._real(method, path, query, payload)

        def _real(self, method: str, path: str, query: str, payload: Any) -> int:
            if path == "/acme/_apis/connectionData" and "api-version=7.1-preview" in query:
                self._answer(200, {"authenticatedUser": {"id": state.ME}})
                return 200
            project = "/acme/ml%20project/_apis/"
            if path == f"{project}build/builds/77/timeline" and "api-version=7.1" in query:
                self._answer(200, {"records": state.timeline})
                return 200
            if path == f"{project}pipelines/approvals" and parse_qs(query).get("$expand") == [
                "steps"
            ]:
                asked = parse_qs(query)["approvalIds"][0].split(",")
                self._answer(200, {"value": [state.approvals[a] for a in asked]})
                return 200
            if "api-version=7.1" not in query or not path.startswith(prefix):
                self._answer(404, {"message": "not found"})
                return 404
            rest = path.removeprefix(prefix).split("/")
            if len(rest) == 2 and method == "GET":
                self._answer(
                    200, {"value": list(state.threads.values()), "count": len(state.threads)}
                )
                return 200
            if len(rest) == 2 and method == "POST":
                tid = len(state.threads) + 1
                comments = [{"id": 1, **payload["comments"][0], "author": {"id": state.ME}}]
                state.threads[tid] = {"id": tid, "comments": comments, "status": payload["status"]}
                self._answer(200, state.threads[tid])
                return 200
            if len(rest) == 5 and method == "PATCH":
                thread = state.threads[int(rest[2])]
                thread["comments"][int(rest[4]) - 1]["content"] = payload["content"]
                self._answer(200, thread["comments"][0])
                return 200
            if len(rest) == 5 and method == "DELETE":
                state.threads[int(rest[2])]["comments"][int(rest[4]) - 1]["isDeleted"] = True
                self._answer(200)
                return 200
            self._answer(405, {"message": "no"})
            return 405

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/acme/", state
    server.shutdown()
