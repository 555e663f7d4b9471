"""A loopback HTTP server speaking the GitHub REST shapes that mlops-ci's PyGithub calls use.

Issues and their comments, pulls (head sha), and injected faults: a queue of responses
(status, headers, body) returned before the real handling, to test retries and rate limits.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import ThreadingHTTPServer
from typing import Any

from tests.support.loopback import RestHandler


@dataclass
class Fault:
    method: str
    path: str  # regular expression matched against the request path
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: dict[str, Any] = field(default_factory=dict)
    after: bool = False  # handle the request for real, then answer with this fault


@dataclass
class GithubState:
    token: str
    read_only: bool = False
    # The token's login as GET /user tells it; None: an installation token (GITHUB_TOKEN),
    # which GET /user refuses with 403 and which writes as github-actions[bot].
    login: str | None = None
    comments: dict[int, dict[str, Any]] = field(default_factory=dict)  # id -> comment
    pulls: dict[int, str] = field(default_factory=dict)  # number -> head sha
    faults: list[Fault] = field(default_factory=list)
    requests: list[tuple[str, str, int]] = field(default_factory=list)  # method, path, status
    authorizations: set[str] = field(default_factory=set)
    run_approvals: dict[int, list[dict[str, Any]]] = field(
        default_factory=dict
    )  # run id -> history
    reviews: dict[int, list[dict[str, Any]]] = field(default_factory=dict)  # PR -> reviews
    dispatches: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # repo, payload
    next_id: int = 100
    lock: threading.Lock = field(default_factory=threading.Lock)
    base: str = ""

    def add_comment(self, repo: str, number: int, body: str, login: str) -> int:
        """A comment written by ``login`` (someone else than the token), as GitHub lists it."""
        with self.lock:
            self.next_id += 1
            cid = self.next_id
            self.comments[cid] = {
                "_issue": (repo, number),
                "id": cid,
                "body": body,
                "url": f"{self.base}/repos/{repo}/issues/comments/{cid}",
                "html_url": f"https://github.example/{repo}/pull/{number}#issuecomment-{cid}",
                "user": {"login": login},
            }
        return cid


class _Handler(RestHandler):
    server: _Server

    def _handle(self, method: str) -> None:
        state = self.server.state
        length = int(self.headers.get("Content-Length") or 0)
        payload = json.loads(self.rfile.read(length) or b"{}") if length else {}
        path = re.sub(r"^/api/v3(?=/)", "", self.path.split("?")[0])  # GitHub Enterprise prefix
        with state.lock:
            state.authorizations.add(self.headers.get("Authorization", ""))
            status, headers, body = self._route(state, method, path, payload)
            state.requests.append((method, path, status))
        data = b"" if body is None else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    def _route(
        self, state: GithubState, method: str, path: str, payload: dict[str, Any]
    ) -> tuple[int, dict[str, str], Any]:
        for fault in state.faults:
            if fault.method == method and re.fullmatch(fault.path, path):
                state.faults.remove(fault)
                if fault.after:
                    self._real(state, method, path, payload)
                return fault.status, fault.headers, fault.body
        return self._real(state, method, path, payload)

    def _real(
        self, state: GithubState, method: str, path: str, payload: dict[str, Any]
    ) -> tuple[int, dict[str, str], Any]:
        if self.headers.get("Authorization") != f"token {state.token}":
            return 401, {}, {"message": "Bad credentials"}
        base = f"http://{self.server.server_address[0]}:{self.server.server_address[1]}"
        if path == "/user" and method == "GET":
            if state.login is None:
                return 403, {}, {"message": "Resource not accessible by integration"}
            return 200, {}, {"login": state.login, "id": 1, "type": "User"}
        if m := re.fullmatch(r"/repos/([^/]+/[^/]+)/issues/(\d+)/comments", path):
            repo, number = m.group(1), int(m.group(2))
            if method == "GET":
                mine = [c for c in state.comments.values() if c["_issue"] == (repo, number)]
                return 200, {}, [_public(c) for c in sorted(mine, key=lambda c: c["id"])]
            if method == "POST":
                if state.read_only:
                    return 403, {}, {"message": "Resource not accessible by integration"}
                state.next_id += 1
                cid = state.next_id
                state.comments[cid] = {
                    "_issue": (repo, number),
                    "id": cid,
                    "body": payload["body"],
                    "url": f"{base}/repos/{repo}/issues/comments/{cid}",
                    "html_url": f"https://github.example/{repo}/pull/{number}#issuecomment-{cid}",
                    "user": {"login": state.login or "github-actions[bot]"},
                }
                return 201, {}, _public(state.comments[cid])
        if m := re.fullmatch(r"/repos/([^/]+/[^/]+)/issues/comments/(\d+)", path):
            cid = int(m.group(2))
            if cid not in state.comments:
                return 404, {}, {"message": "Not Found"}
            if state.read_only:
                return 403, {}, {"message": "Resource not accessible by integration"}
            if method == "PATCH":
                state.comments[cid]["body"] = payload["body"]
                return 200, {}, _public(state.comments[cid])
            if method == "DELETE":
                del state.comments[cid]
                return 204, {}, None
        if (m := re.fullmatch(r"/repos/([^/]+/[^/]+)/dispatches", path)) and method == "POST":
            state.dispatches.append((m.group(1), payload))
            return 204, {}, None
        if m := re.fullmatch(r"/repos/([^/]+/[^/]+)/actions/runs/(\d+)/approvals", path):
            return 200, {}, state.run_approvals.get(int(m.group(2)), [])
        if m := re.fullmatch(r"/repos/([^/]+/[^/]+)/pulls/(\d+)/reviews", path):
            return 200, {}, state.reviews.get(int(m.group(2)), [])
        if m := re.fullmatch(r"/repos/([^/]+/[^/]+)/pulls/(\d+)", path):
            number = int(m.group(2))
            if number in state.pulls:
                return 200, {}, {"number": number, "head": {"sha": state.pulls[number]}}
        return 404, {}, {"message": "Not Found"}


def _public(comment: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in comment.items() if not k.startswith("_")}


class _Server(ThreadingHTTPServer):
    state: GithubState


@contextmanager
def github_server(token: str) -> Iterator[tuple[str, GithubState]]:
    """(api_url, state) of a server on 127.0.0.1, stopped on exit."""
    server = _Server(("127.0.0.1", 0), _Handler)
    server.state = GithubState(token=token, base=f"http://127.0.0.1:{server.server_address[1]}")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", server.state
    finally:
        server.shutdown()
        server.server_close()
