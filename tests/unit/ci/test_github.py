"""Posting to GitHub without PyGithub names the github extra."""

from __future__ import annotations

import pytest

from mlops_ci.ci.github import GithubClient, GithubSettings
from mlops_ci.errors import MlopsError
from mlops_ci.extras import install_hint
from tests.support.extras import hide


@pytest.mark.timeout(60)
def test_posting_to_github_without_pygithub_names_the_github_extra(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    hide(monkeypatch, "github")
    with pytest.raises(MlopsError) as caught:
        GithubClient(GithubSettings("t", "http://127.0.0.1:9", "acme/iris"))
    assert "(the github extra)" in str(caught.value)
    assert caught.value.hint == install_hint("github")
