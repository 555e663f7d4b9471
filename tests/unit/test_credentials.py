"""No credential in what mlops-ci prints or records: URLs parsed, never sliced."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlops_ci.credentials import redact_urls, safe_url
from mlops_ci.registry.mlflow import MlflowRegistry

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


def test_the_registry_names_its_server_without_credentials(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A real MLflow client against a closed port: the one-line error names the server
    without the password (which holds an '@') or the query token."""
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    registry = MlflowRegistry("http://alice:p@ssSECRET@127.0.0.1:9/?token=QSECRET", "/tmp/a")
    assert registry.describe() == "http://***@127.0.0.1:9/?token=***"
    from mlops_ci.errors import ServiceError

    with pytest.raises(ServiceError) as caught:
        registry.find_cached_run("exp", "key")
    assert "SECRET" not in str(caught.value) and "127.0.0.1:9" in str(caught.value)


def test_an_undefined_azure_macro_is_unset_and_a_bad_uri_is_bad_input(
    project: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The Azure templates pass `MLFLOW_TRACKING_URI: $(MLFLOW_TRACKING_URI)`; a pipeline that
    never defined the variable hands over that text, which means "use mlops.yaml's". A value
    MLflow cannot open is the user's error (exit 2, naming the variable), not an internal one."""
    from mlops_ci.config.types import load_config
    from tests.support.helpers import run_cli

    config = load_config(project)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "$(MLFLOW_TRACKING_URI)")
    registry = MlflowRegistry.for_config(config)
    assert registry.uri == f"sqlite:///{project / '.mlops' / 'mlflow.db'}"

    monkeypatch.setenv("MLFLOW_TRACKING_URI", "mlruns")
    assert run_cli("status", "-c", str(project)) == 2
    err = capsys.readouterr().err
    assert "MLFLOW_TRACKING_URI: 'mlruns': not a tracking URI (sqlite:///PATH" in err
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "bogus://alice:pSECRET@host/")
    assert run_cli("status", "-c", str(project)) == 2
    err = capsys.readouterr().err
    assert "MLFLOW_TRACKING_URI: 'bogus://***@host/'" in err and "SECRET" not in err
    assert len(err.strip().splitlines()) == 1, err
