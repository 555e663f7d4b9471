"""train's help names every variable it strips from the training command's environment."""

from __future__ import annotations

import re

from mlops_ci.cli import cli


def test_train_help_lists_every_variable_it_strips() -> None:
    from mlops_ci.pipeline.usercommand import SECRET_PREFIXES, SECRET_VARIABLES, URI_VARIABLES

    words = set(re.findall(r"[A-Z_]+", cli.commands["train"].help or ""))
    assert set(SECRET_VARIABLES) <= words, set(SECRET_VARIABLES) - words
    assert set(URI_VARIABLES) <= words
    assert all(f"{prefix}*" in (cli.commands["train"].help or "") for prefix in SECRET_PREFIXES)
    assert "secret_env" in (cli.commands["train"].help or "")
