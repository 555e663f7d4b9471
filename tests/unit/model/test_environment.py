"""A model's own environment: the distributions loading it imported, a pyfunc folder's own
requirements.txt, pruned of what another of them already requires."""

from __future__ import annotations

import sys
from pathlib import Path

from mlops_ci.model.environment import (
    canonical,
    folder_requirements,
    imported_distributions,
    prune,
    snapshot,
)
from mlops_ci.runner.client import installed


def test_what_loading_imported_is_named_by_its_distribution() -> None:
    sys.modules.pop("statsmodels", None)
    before = snapshot() - {"statsmodels"}
    import statsmodels  # noqa: F401  (a library the model would import)

    found = imported_distributions(before)
    assert "statsmodels" in found
    assert not any(d.lower() in ("mlops-ci", "pip") for d in found)


def test_the_standard_library_and_private_modules_are_no_requirement() -> None:
    before = snapshot() - {"json", "_csv"}
    assert imported_distributions(before) == []


def test_a_pyfunc_folders_requirements_are_read_as_names_only(tmp_path: Path) -> None:
    (tmp_path / "requirements.txt").write_text(
        "mlflow==3.17.2\nstatsmodels>=0.14 ; python_version > '3'\npandas[performance]\n"
        "-r other.txt\n--index-url https://evil.example/simple\n"
        "git+https://evil.example/x.git\n./local.whl\n# a comment\ncloudpickle==3.1  # pinned\n"
    )
    assert folder_requirements(tmp_path) == [
        "cloudpickle",
        "mlflow-skinny",  # pyfunc serving needs MLflow's lean client only
        "pandas",
        "statsmodels",
    ]
    assert folder_requirements(tmp_path / "none") == []


def test_what_another_requires_is_pruned_like_mlflow_does() -> None:
    # statsmodels requires numpy, scipy, pandas and patsy: pip installs them with it
    assert prune(["numpy", "patsy", "scipy", "statsmodels", "pandas"]) == ["statsmodels"]
    assert prune(["catboost", "lightgbm"]) == ["catboost", "lightgbm"]


def test_names_are_compared_as_pep_503_normalises_them() -> None:
    assert canonical("typing_extensions") == canonical("Typing.Extensions") == "typing-extensions"


def test_the_parent_keeps_only_what_is_installed_here_by_its_real_name() -> None:
    said = ["statsmodels", "no-such-distribution-xyz", "--index-url=x", 42, "PyYAML", "pyyaml"]
    assert installed(said) == ("PyYAML", "statsmodels")
