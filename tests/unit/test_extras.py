"""A verb whose extra is not installed says which extra brings it, as one line and exit 2.

A module is hidden the way a missing distribution looks to Python: ``sys.modules[name] = None``
makes ``importlib.util.find_spec`` return None and ``import name`` raise ImportError.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import tomllib

from mlops_ci.ci.github import GithubClient, GithubSettings
from mlops_ci.errors import MlopsError
from mlops_ci.extras import EXTRAS, install_hint, missing
from mlops_ci.monitor.sources import chunks
from tests.support.helpers import run_cli

pytestmark = pytest.mark.timeout(60)
ROOT = Path(__file__).resolve().parents[2]


def hide(monkeypatch: pytest.MonkeyPatch, *modules: str) -> None:
    for name in modules:
        monkeypatch.setitem(sys.modules, name, None)


def test_every_extra_named_in_the_code_is_declared_in_pyproject() -> None:
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    optional = declared["optional-dependencies"]
    assert set(EXTRAS) <= set(optional)
    core = " ".join(declared["dependencies"]).lower()
    for heavy in ("pyarrow", "pygithub", "fastapi", "dask", "kubernetes"):
        assert heavy not in core, f"{heavy} is in the core install"


def test_batch_score_without_the_batch_extra_names_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    hide(monkeypatch, "pyarrow")
    assert missing("batch") == ["pyarrow"]
    data = tmp_path / "in.csv"
    data.write_text("a\n1\n")
    code = run_cli(
        "batch-score", "--model-dir", str(tmp_path), "--input", str(data), "--output",
        str(tmp_path / "out.parquet"),
    )  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2, err
    assert "error: mlops-ci batch-score needs pyarrow (the batch extra)" in err
    assert f"hint: {install_hint('batch')}" in err
    assert "Traceback" not in err


def test_reading_parquet_without_pyarrow_names_the_file_and_the_extra(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    table = tmp_path / "reference.parquet"
    table.write_bytes(b"PAR1")
    hide(monkeypatch, "pyarrow", "pyarrow.parquet")
    with pytest.raises(MlopsError) as caught:
        next(chunks(table, 100))
    assert str(caught.value) == f"{table}: reading Parquet needs pyarrow (the parquet extra)"
    assert caught.value.hint == install_hint("parquet")


def test_posting_to_github_without_pygithub_names_the_github_extra(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    hide(monkeypatch, "github")
    with pytest.raises(MlopsError) as caught:
        GithubClient(GithubSettings("t", "http://127.0.0.1:9", "acme/iris"))
    assert "(the github extra)" in str(caught.value)
    assert caught.value.hint == install_hint("github")


def test_serve_without_the_serve_extra_names_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    hide(monkeypatch, "fastapi", "uvicorn")
    code = run_cli("serve", "--model-dir", "/nonexistent")
    err = capsys.readouterr().err
    assert code == 2, err
    assert "error: mlops-ci serve needs fastapi, uvicorn (the serve extra)" in err


def test_the_hint_has_the_form_mlops_ci_was_installed_in() -> None:
    """PEP 610's direct_url.json says where the install came from; the hint repeats it."""
    assert install_hint("serve", "") == "pip install 'mlops-ci[serve]'"
    folder = '{"url": "file:///src/my%20ci", "dir_info": {}}'
    assert install_hint("serve", folder) == "pip install '/src/my ci[serve]'"
    editable = '{"url": "file:///src/mlops-ci", "dir_info": {"editable": true}}'
    assert install_hint("batch", editable) == "pip install -e '/src/mlops-ci[batch]'"
    wheel = '{"url": "file:///dist/mlops_ci-0.1.0-py3-none-any.whl", "archive_info": {}}'
    assert (
        install_hint("serve", wheel) == "pip install '/dist/mlops_ci-0.1.0-py3-none-any.whl[serve]'"
    )
    git = (
        '{"url": "https://bob:tok@github.com/acme/mlops-ci.git", '
        '"vcs_info": {"vcs": "git", "commit_id": "abc"}}'
    )
    hint = install_hint("serve", git)
    assert hint == "pip install 'mlops-ci[serve] @ git+https://github.com/acme/mlops-ci.git'"
    assert install_hint("serve", "not json") == "pip install 'mlops-ci[serve]'"


def test_this_install_is_named_as_it_was_made() -> None:
    """The test environment installs the repository editable (pip install -e '.[test]')."""
    assert install_hint("serve") == f"pip install -e '{ROOT}[serve]'"
