"""No credential in what mlops-ci prints or records: URLs parsed, never sliced; the secret
variables' values and every URL's userinfo masked in printed text and log records."""

from __future__ import annotations

import io
import logging

import pytest

from mlops_ci.credentials import (
    _FILTER,
    SECRET_VARIABLES,
    SHOWN_VARIABLES,
    RedactingFilter,
    redact_logs,
    redact_text,
    redact_urls,
    safe_url,
    secret_values,
)

pytestmark = pytest.mark.timeout(60)


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("http://alice:p@ssSECRET@127.0.0.1:9/", "http://***@127.0.0.1:9/"),
        ("https://tokSECRET@github.com/a/b.git", "https://***@github.com/a/b.git"),
        ("http://h:5000/?token=QSECRET&run=1", "http://h:5000/?token=***&run=1"),
        (
            "https://acct.blob.core.windows.net/c/m.onnx?sv=2024&sig=SIGSECRET",
            "https://acct.blob.core.windows.net/c/m.onnx?sv=2024&sig=***",
        ),
        ("https://b.s3.amazonaws.com/k?X-Amz-Signature=AWSSECRET", None),
        ("http://user:pa/ssSECRET@host/", "http://***"),  # a '/' in the password: all masked
        ("http://[::1:5000/", "http://***"),  # unparsable: nothing after :// is shown
        ("sqlite:///tmp/mlflow.db", "sqlite:///tmp/mlflow.db"),
        ("git@github.com:a/b.git", "git@github.com:a/b.git"),
        ("http://127.0.0.1:5000", "http://127.0.0.1:5000"),
    ],
)
def test_safe_url_masks_userinfo_to_the_last_at_and_secret_query_values(
    url: str, masked: str | None
) -> None:
    out = safe_url(url)
    assert "SECRET" not in out
    if masked is not None:
        assert out == masked


def test_userinfo_can_be_dropped_and_urls_in_text_are_masked() -> None:
    url = "https://alice:p@ssSECRET@github.com/acme/x.git"
    assert safe_url(url, userinfo="") == "https://github.com/acme/x.git"
    hook = "https://u:p@ssSECRET@hooks.example:8443/ml?k=v#frag"
    assert safe_url(hook, userinfo="", query=False) == "https://hooks.example:8443/ml"
    text = f"API request to {url}/api?token=T0kSECRET failed: 'http://u:vSECRET@h/'"
    assert "SECRET" not in redact_urls(text)
    assert "https://***@github.com/acme/x.git/api?token=***" in redact_urls(text)


PASSWORD = "pa%ss w0rd-SECRET"  # percent-encoded in the URI, as it must be there
TOKEN = "ghp_tok3nSECRET"


def secret_env() -> dict[str, str]:
    return {
        "MLFLOW_TRACKING_URI": "http://alice:pa%25ss%20w0rd-SECRET@127.0.0.1:5000",
        "GITHUB_TOKEN": TOKEN,
        "MLOPS_ADMIN_TOKEN": "s3cr",  # too short to be masked: "s3cr" stays where it stands
        "MLFLOW_TRACKING_USERNAME": "alice-the-user",  # a name, not a secret
        "MLFLOW_TRACKING_CLIENT_CERT_PATH": "/etc/mlflow/client.pem",
        "HOME": "/home/runner",
    }


def test_printed_text_loses_the_secret_values_of_the_environment_and_every_urls_userinfo() -> None:
    text = (
        f"request to http://alice:pa%25ss%20w0rd-SECRET@127.0.0.1:5000/api failed; "
        f"password {PASSWORD!r}; header Authorization: token {TOKEN}; key s3cr; "
        "user alice-the-user, cert /etc/mlflow/client.pem, home /home/runner; "
        "https://bob:hunter2SECRET@example.org/x"
    )
    out = redact_text(text, secret_env())
    assert "SECRET" not in out, out
    assert "http://***@127.0.0.1:5000/api" in out and "https://***@example.org/x" in out
    assert "password '***'" in out and "token ***;" in out
    assert "key s3cr;" in out and "alice-the-user" in out and "/etc/mlflow/client.pem" in out
    assert secret_values(secret_env()) == [
        "pa%25ss%20w0rd-SECRET",
        "pa%ss w0rd-SECRET",
        "ghp_tok3nSECRET",
    ]
    assert redact_text("nothing to hide here", {}) == "nothing to hide here"


def test_every_variable_the_training_command_loses_is_the_one_list() -> None:
    from mlops_ci.pipeline import usercommand

    assert usercommand.SECRET_VARIABLES is SECRET_VARIABLES
    assert set(SHOWN_VARIABLES) < set(SECRET_VARIABLES)


def test_log_records_of_mlflow_and_the_libraries_under_it_are_redacted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The filter sits on the handlers, so a child logger's records (mlflow.store.…) and the
    last resort's (urllib3, with no handler set up) are redacted too; message, arguments and
    traceback."""
    for name, value in secret_env().items():
        monkeypatch.setenv(name, value)
    shown = io.StringIO()
    handler = logging.StreamHandler(shown)
    parent = logging.getLogger("mlops-ci-test-redaction")
    parent.handlers, parent.propagate = [handler], False
    monkeypatch.setattr(logging, "lastResort", logging.StreamHandler(shown))
    try:
        redact_logs(parent.name)
        redact_logs(parent.name)  # once is enough: installed once, whoever asks again
        assert sum(isinstance(f, RedactingFilter) for f in handler.filters) == 1
        child = logging.getLogger(f"{parent.name}.store.rest")
        child.warning("API request to %s failed", "http://alice:pa%25ss%20w0rd-SECRET@h:1/api")
        try:
            raise RuntimeError(f"while using {TOKEN}")
        except RuntimeError:
            child.exception("token %s refused", TOKEN)
        child.warning("no %s placeholder", "arguments", "too many")  # unformattable: passes
        logging.getLogger("mlops-ci-test-unhandled").propagate = False
        logging.getLogger("mlops-ci-test-unhandled").warning("at https://bob:xSECRETx@h/")
    finally:
        parent.handlers = []
        handler.removeFilter(_FILTER)
        logging.lastResort.removeFilter(_FILTER)
    out = shown.getvalue()
    assert "SECRET" not in out, out
    assert "API request to http://***@h:1/api failed" in out
    assert "token *** refused" in out and "RuntimeError: while using ***" in out
    assert "at https://***@h/" in out
