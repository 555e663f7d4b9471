"""A verb whose extra is not installed says which extra brings it, as one line and exit 2.

A module is hidden the way a missing distribution looks to Python: ``sys.modules[name] = None``
makes ``importlib.util.find_spec`` return None and ``import name`` raise ImportError.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import tomllib

from mlops_ci.extras import EXTRAS, install_hint

pytestmark = pytest.mark.timeout(60)


ROOT = Path(__file__).resolve().parents[2]


def test_every_extra_named_in_the_code_is_declared_in_pyproject() -> None:
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    optional = declared["optional-dependencies"]
    assert set(EXTRAS) <= set(optional)
    core = " ".join(declared["dependencies"]).lower()
    for heavy in ("pyarrow", "pygithub", "fastapi", "dask", "kubernetes"):
        assert heavy not in core, f"{heavy} is in the core install"


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
