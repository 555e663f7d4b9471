from __future__ import annotations

import importlib

from mlops_ci.cli import cli
from mlops_ci.steps import STEPS


def test_every_step_has_a_module_a_verb_and_help() -> None:
    for name in STEPS:
        module = importlib.import_module(f"mlops_ci.steps.{name}")
        assert callable(getattr(module, name)), f"steps/{name}.py has no {name}()"
        command = cli.commands.get(name)
        assert command is not None, f"no `mlops-ci {name}` verb"
        assert command.help and len(command.help) > 20, f"`mlops-ci {name}` has no useful --help"
