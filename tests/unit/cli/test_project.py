"""train's help names every variable it strips from the training command's environment; the
demo's hint to browse its registry works with what is installed, or says what to install."""

from __future__ import annotations

import re
from importlib import metadata

import pytest

from mlops_ci.cli import cli
from mlops_ci.cli.project import browse_hint


def test_train_help_lists_every_variable_it_strips() -> None:
    from mlops_ci.pipeline.usercommand import SECRET_PREFIXES, SECRET_VARIABLES, URI_VARIABLES

    words = set(re.findall(r"[A-Z_]+", cli.commands["train"].help or ""))
    assert set(SECRET_VARIABLES) <= words, set(SECRET_VARIABLES) - words
    assert set(URI_VARIABLES) <= words
    assert all(f"{prefix}*" in (cli.commands["train"].help or "") for prefix in SECRET_PREFIXES)
    assert "secret_env" in (cli.commands["train"].help or "")


@pytest.mark.timeout(60)
def test_the_browse_hint_names_the_full_mlflow_where_only_skinny_is_installed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    uri = "sqlite:////tmp/demo/.mlops/mlflow.db"
    real = metadata.version
    if "mlflow" in {d.metadata["Name"] for d in metadata.distributions()}:
        assert browse_hint(uri) == f"mlflow ui --backend-store-uri {uri}"

    def skinny_only(name: str) -> str:
        if name == "mlflow":
            raise metadata.PackageNotFoundError(name)
        return real(name)

    monkeypatch.setattr(metadata, "version", skinny_only)
    assert browse_hint(uri) == (
        f"pip install 'mlflow=={real('mlflow-skinny')}' (the UI is not in mlflow-skinny), "
        f"then mlflow ui --backend-store-uri {uri}"
    )
