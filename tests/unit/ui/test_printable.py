"""User strings reach the terminal and CI logs as text: no escape sequence, CR, bidi override
or workflow command takes effect."""

from __future__ import annotations

import pytest

from mlops_ci.report.markdown import one_line
from mlops_ci.ui.printable import multi_line, single_line
from tests.support.terminal import HOSTILE

pytestmark = pytest.mark.timeout(120)


def test_controls_and_bidi_are_shown_escaped() -> None:
    out = single_line(HOSTILE + "\n::error::x\t##vso[task.complete]y")
    assert out == (
        "a\\x1b[2J\\x1b]0;pwned\\x07b\\x0dc\\u202ed\\x00e\\x9bf\\n::error::x\\t#\u200b#vso[task.complete]y"
    )
    assert (
        multi_line("ok\n::error::x\n  ::add-mask::y")
        == "ok\n:\u200b:error::x\n  :\u200b:add-mask::y"
    )
    assert one_line(f"  {HOSTILE}\n z ") == "a\\x1b[2J\\x1b]0;pwned\\x07b c\\u202ed\\x00e\\x9bf z"
    assert multi_line("plain: naïve — 日本") == "plain: naïve — 日本"


def test_printed_text_shows_no_credential(monkeypatch: pytest.MonkeyPatch) -> None:
    """Whoever wrote the text (MLflow, requests, git): a URL's userinfo and the secret
    variables' values are masked, before a newline or tab in them is escaped."""
    monkeypatch.setenv("MLOPS_ADMIN_TOKEN", "adm\tSECRET")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://alice:pwSECRET1@h:5000")
    text = "at http://alice:pwSECRET1@h:5000/api: token adm\tSECRET refused, pwSECRET1 too"
    for out in (single_line(text), multi_line(text)):
        assert out == "at http://***@h:5000/api: token *** refused, *** too", out
