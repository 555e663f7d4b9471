"""No credential in what mlops-ci prints or records: URLs parsed, never sliced."""

from __future__ import annotations

import pytest

from mlops_ci.credentials import redact_urls, safe_url

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
