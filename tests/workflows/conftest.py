"""The user repository of one test, with the team's registry and the fake GitHub API; the
token is the test module's ``TOKEN`` (each module its own, so a leak names its test)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.github_server import GithubState
from tests.workflows.act import UserRepo, team_repo


@pytest.fixture
def repo(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[UserRepo, GithubState]]:
    with team_repo(tmp_path, request.module.TOKEN) as made:
        yield made
