"""Lifecycle events out: CloudEvents 1.0 (structured JSON) to webhooks, and GitHub
repository_dispatch, so another system or workflow can react.

Each event has one id, kept across retries so a receiver can drop duplicates. A webhook with a
secret gets ``X-Mlops-Signature-256: sha256=HMAC(secret, body)`` (GitHub's scheme). Deliveries
retry 5xx, 429 and network errors with exponential backoff (honouring ``Retry-After``); what
still fails is returned as a failed ``Delivery`` for the caller to report, never dropped.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import socket
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from mlops_ci.config.types import Config, Webhook
from mlops_ci.credentials import safe_url

TYPE_PREFIX = "io.mlops-ci."
DISPATCH_PREFIX = "mlops-ci."
SIGNATURE_HEADER = "X-Mlops-Signature-256"
EVENTS = (
    "run.completed",
    "model.compared",
    "model.registered",
    "model.promoted",
    "model.packaged",
    "model.deployed",
    "model.rolled_back",
    "drift.checked",
    "drift.detected",
    "model.quality.checked",
    "model.quality.degraded",
)


@dataclass(frozen=True)
class Delivery:
    target: str  # the webhook URL (without credentials) or repository_dispatch:OWNER/NAME
    event_id: str
    type: str
    status: str  # delivered | failed
    attempts: int
    detail: str


def make_event(
    name: str, model: str, subject: str, data: Mapping[str, Any], environ: Mapping[str, str]
) -> dict[str, Any]:
    """A CloudEvents 1.0 event in structured mode."""
    where = environ.get("GITHUB_REPOSITORY") or socket.gethostname()
    return {
        "specversion": "1.0",
        "id": str(uuid.uuid4()),
        "source": f"mlops-ci://{where}/models/{model}",
        "type": TYPE_PREFIX + name,
        "subject": subject,
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "datacontenttype": "application/json",
        "data": dict(data),
    }


def sign(body: bytes, secret: str) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def post_webhook(
    hook: Webhook,
    event: dict[str, Any],
    environ: Mapping[str, str],
    sleep: Callable[[float], None] = time.sleep,
) -> Delivery:
    body = json.dumps(event, sort_keys=True).encode()
    headers = {
        "Content-Type": "application/cloudevents+json; charset=utf-8",
        "User-Agent": "mlops-ci",
        "X-Mlops-Event-Id": event["id"],
    }
    if hook.secret_env:
        secret = environ.get(hook.secret_env)
        if not secret:
            return Delivery(
                _safe(hook.url),
                event["id"],
                event["type"],
                "failed",
                0,
                f"secret variable {hook.secret_env} is not set",
            )
        headers[SIGNATURE_HEADER] = sign(body, secret)
    detail, attempt = "", 0
    for attempt in range(1, hook.retries + 2):
        request = urllib.request.Request(hook.url, data=body, headers=headers, method="POST")
        wait = 0.5 * 2 ** (attempt - 1)
        try:
            with urllib.request.urlopen(request, timeout=hook.timeout_s) as answer:
                return Delivery(
                    _safe(hook.url),
                    event["id"],
                    event["type"],
                    "delivered",
                    attempt,
                    f"HTTP {answer.status}",
                )
        except urllib.error.HTTPError as err:
            detail = f"HTTP {err.code}"
            if err.code != 429 and err.code < 500:
                break  # the receiver refuses it; retrying will not help
            wait = max(wait, _retry_after(err.headers.get("Retry-After")))
        except OSError as err:
            detail = f"{type(err).__name__}: {err}"
        if attempt <= hook.retries:
            sleep(min(wait, 60.0))
    return Delivery(_safe(hook.url), event["id"], event["type"], "failed", attempt, detail)


def dispatch(event: dict[str, Any], repository: str, environ: Mapping[str, str]) -> Delivery:
    """GitHub repository_dispatch with event_type mlops-ci.NAME and the event as payload."""
    from mlops_ci.ci.github import GithubClient, GithubSettings
    from mlops_ci.errors import MlopsError

    name = event["type"].removeprefix(TYPE_PREFIX)
    settings = GithubSettings.from_env(environ)
    settings = GithubSettings(settings.token, settings.api_url, repository)
    target = f"repository_dispatch:{repository}"
    try:
        GithubClient(settings).repository_dispatch(DISPATCH_PREFIX + name, event)
    except MlopsError as err:
        return Delivery(target, event["id"], event["type"], "failed", 1, str(err))
    return Delivery(target, event["id"], event["type"], "delivered", 1, "HTTP 204")


def emit(
    config: Config,
    name: str,
    subject: str,
    data: Mapping[str, Any],
    environ: Mapping[str, str] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> list[Delivery]:
    """Send event ``name`` wherever mlops.yaml's notify section asks for it."""
    env = os.environ if environ is None else environ
    notify = config.notify
    hooks = [h for h in notify.webhooks if not h.events or name in h.events]
    to_dispatch = name in notify.dispatch_events
    if not hooks and not to_dispatch:
        return []
    event = make_event(name, config.model.name, subject, data, env)
    deliveries = [post_webhook(h, event, env, sleep) for h in hooks]
    if to_dispatch:
        repository = notify.dispatch_repository or env.get("GITHUB_REPOSITORY")
        if repository:
            deliveries.append(dispatch(event, repository, env))
        else:
            deliveries.append(
                Delivery(
                    "repository_dispatch",
                    event["id"],
                    event["type"],
                    "failed",
                    0,
                    "no repository: set GITHUB_REPOSITORY",
                )
            )
    return deliveries


def _retry_after(value: str | None) -> float:
    try:
        return float(value) if value is not None else 0.0
    except ValueError:
        return 0.0


def _safe(url: str) -> str:
    """The URL without credentials or query (where tokens hide)."""
    return safe_url(url, userinfo="", query=False)
