"""The lineage read from a real git repository (git itself) holds no credential."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from mlops_ci.provenance import git_info

pytestmark = pytest.mark.timeout(60)


def test_a_remote_with_credentials_never_reaches_the_lineage(tmp_path: Path) -> None:
    """A real repository whose origin holds a token with an '@' in it (the old slicing
    kept 'ssSECRET@github.com')."""
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    remote = "https://alice:p@ssSECRET@github.com/acme/x.git?access_token=QSECRET"
    subprocess.run(["git", "-C", str(tmp_path), "remote", "add", "origin", remote], check=True)
    info = git_info(tmp_path, {})
    assert info.repository == "https://github.com/acme/x.git?access_token=***"
    azure = git_info(tmp_path, {"BUILD_REPOSITORY_URI": "https://org:PATSECRET@dev.azure.com/o/p"})
    assert azure.repository == "https://dev.azure.com/o/p"
