"""The CLI (mlops_ci/cli/__init__.py): every verb has help a newcomer understands."""

from __future__ import annotations

from mlops_ci.cli import cli


def test_every_verb_has_help_a_newcomer_understands() -> None:
    for name, command in cli.commands.items():
        assert command.help and len(command.help) > 30, f"`mlops-ci {name}` --help is too thin"
        for param in command.params:
            if param.param_type_name == "option" and param.name not in ("help",):
                assert getattr(param, "help", None), f"`mlops-ci {name}` {param.opts} has no help"
