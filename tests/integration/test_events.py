"""Lifecycle events over real HTTP: a loopback webhook receiver, and repository_dispatch reaching
the loopback GitHub server."""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jsonschema
import pytest

from mlops_ci.config.types import Config, Webhook
from mlops_ci.events import SIGNATURE_HEADER, emit
from tests.support.github_server import github_server
from tests.support.helpers import run_cli

SECRET = "whsec-test-0123456789"
TOKEN = "ghs_dispatch_token_0123456789"

# The CloudEvents 1.0 required and optional context attributes, as the spec defines them.
CLOUDEVENT = {
    "type": "object",
    "required": ["specversion", "id", "source", "type"],
    "properties": {
        "specversion": {"const": "1.0"},
        "id": {"type": "string", "minLength": 1},
        "source": {"type": "string", "minLength": 1, "format": "uri-reference"},
        "type": {"type": "string", "minLength": 1},
        "subject": {"type": "string", "minLength": 1},
        "time": {"type": "string", "format": "date-time"},
        "datacontenttype": {"const": "application/json"},
        "data": {"type": "object"},
    },
}


@dataclasses.dataclass
class Receiver:
    url: str
    received: list[tuple[dict[str, str], bytes]] = dataclasses.field(default_factory=list)
    fail_next: list[int] = dataclasses.field(default_factory=list)  # statuses to answer first

    def events(self) -> list[dict[str, Any]]:
        return [json.loads(body) for _, body in self.received]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver("")

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            status = state.fail_next.pop(0) if state.fail_next else 202
            if status < 300:
                state.received.append((dict(self.headers.items()), body))
            self.send_response(status)
            self.send_header("Content-Length", "0")
            if status == 429:
                self.send_header("Retry-After", "0")
            self.end_headers()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}/hooks/ml"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    server.shutdown()


def with_hooks(config: Config, *hooks: Webhook, **notify: Any) -> Config:
    return dataclasses.replace(
        config, notify=dataclasses.replace(config.notify, webhooks=hooks, **notify)
    )


def hook(url: str, **changes: Any) -> Webhook:
    return dataclasses.replace(Webhook(url, (), "MLOPS_WEBHOOK_SECRET", 5.0, 3), **changes)


def test_webhook_gets_a_valid_signed_cloudevent(config: Config, receiver: Receiver) -> None:
    cfg = with_hooks(config, hook(receiver.url))
    env = {"MLOPS_WEBHOOK_SECRET": SECRET, "GITHUB_REPOSITORY": "acme/iris"}
    data = {"model": "iris-classifier", "version": "3", "run_id": "abc", "verdict": "pass"}
    (delivery,) = emit(cfg, "model.registered", "iris-classifier/3", data, env)
    assert delivery.status == "delivered" and delivery.attempts == 1
    ((headers, body),) = receiver.received
    event = json.loads(body)
    jsonschema.validate(event, CLOUDEVENT, format_checker=jsonschema.FormatChecker())
    assert event["type"] == "io.mlops-ci.model.registered" and event["data"] == data
    assert event["source"] == "mlops-ci://acme/iris/models/iris-classifier"
    assert headers["Content-Type"].startswith("application/cloudevents+json")
    expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(headers[SIGNATURE_HEADER], expected)
    assert headers["X-Mlops-Event-Id"] == event["id"] == delivery.event_id


def test_a_receiver_failing_twice_gets_the_event_once(config: Config, receiver: Receiver) -> None:
    receiver.fail_next = [503, 429]
    waits: list[float] = []
    cfg = with_hooks(config, hook(receiver.url))
    env = {"MLOPS_WEBHOOK_SECRET": SECRET}
    (delivery,) = emit(cfg, "model.deployed", "iris-classifier/2", {"v": 2}, env, waits.append)
    assert delivery.status == "delivered" and delivery.attempts == 3
    assert len(receiver.received) == 1 and waits == [0.5, 1.0]  # exponential backoff


def test_undeliverable_events_are_reported_not_dropped(
    config: Config, receiver: Receiver, capsys: pytest.CaptureFixture[str]
) -> None:
    receiver.fail_next = [500] * 10
    cfg = with_hooks(
        config, hook(receiver.url, retries=2, secret_env=None), hook(receiver.url + "?token=abc")
    )
    deliveries = emit(cfg, "drift.detected", "m/drift", {}, {}, lambda _: None)
    assert [(d.status, d.attempts) for d in deliveries] == [("failed", 3), ("failed", 0)]
    assert deliveries[0].detail == "HTTP 500"
    assert "MLOPS_WEBHOOK_SECRET is not set" in deliveries[1].detail
    assert "token=abc" not in deliveries[1].target  # URLs are reported without their query
    refused = with_hooks(config, hook(receiver.url, secret_env=None))
    receiver.fail_next = [400]
    (bad,) = emit(refused, "drift.detected", "m/drift", {}, {}, lambda _: None)
    assert (bad.status, bad.attempts, bad.detail) == ("failed", 1, "HTTP 400")  # no retry on 4xx


def test_event_filter_and_fail_on_error_in_the_cli(
    project: Any, receiver: Receiver, capsys: pytest.CaptureFixture[str], monkeypatch: Any
) -> None:
    current = str(project / "data" / "test.csv")  # 60 rows: not judged, exit 0, drift.checked
    original = (project / "mlops.yaml").read_text()

    def subscribe(events: str) -> None:
        (project / "mlops.yaml").write_text(
            original + f"notify:\n  webhooks: [{{url: '{receiver.url}', events: {events}}}]\n"
        )

    subscribe("[drift.detected]")  # filtered out: drift.checked is not asked for
    assert run_cli("drift", "-c", str(project), "--current", current) == 0
    assert receiver.events() == []
    subscribe("[drift.detected, drift.checked]")
    assert run_cli("drift", "-c", str(project), "--current", current) == 0
    assert [e["type"] for e in receiver.events()] == ["io.mlops-ci.drift.checked"]
    receiver.fail_next = [500] * 20
    monkeypatch.setattr("time.sleep", lambda _: None)
    code = run_cli("drift", "-c", str(project), "--current", current)
    assert code == 0  # a failed delivery does not fail the step unless fail_on_error
    assert "not delivered after 4 attempt(s): HTTP 500" in capsys.readouterr().err
    (project / "mlops.yaml").write_text(
        (project / "mlops.yaml")
        .read_text()
        .replace("notify:\n", "notify:\n  fail_on_error: true\n")
    )
    receiver.fail_next = [500] * 20
    assert (
        run_cli("drift", "-c", str(project), "--current", str(project / "data" / "test.csv")) == 3
    )


def test_repository_dispatch_reaches_github(config: Config) -> None:
    with github_server(TOKEN) as (api, state):
        cfg = dataclasses.replace(
            config,
            notify=dataclasses.replace(config.notify, dispatch_events=("drift.detected",)),
        )
        env = {"GITHUB_TOKEN": TOKEN, "GITHUB_API_URL": api, "GITHUB_REPOSITORY": "acme/iris"}
        data = {"model": "iris-classifier", "drifted": ["petal_length"], "current": "logs/"}
        (delivery,) = emit(cfg, "drift.detected", "iris-classifier/drift", data, env)
        assert delivery.status == "delivered" and delivery.target == "repository_dispatch:acme/iris"
        ((repo, payload),) = state.dispatches
        assert repo == "acme/iris" and payload["event_type"] == "mlops-ci.drift.detected"
        event = payload["client_payload"]["event"]
        assert event["type"] == "io.mlops-ci.drift.detected" and event["data"] == data
        assert state.authorizations == {f"token {TOKEN}"}
