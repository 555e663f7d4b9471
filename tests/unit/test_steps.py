from __future__ import annotations

import importlib

from mlops_ci.cli import cli
from mlops_ci.steps import STEPS, VERBS


def test_every_step_has_a_module_a_verb_and_help() -> None:
    for name in STEPS:
        module = importlib.import_module(f"mlops_ci.steps.{name}")
        assert callable(getattr(module, name)), f"steps/{name}.py has no {name}()"
        command = cli.commands.get(name)
        assert command is not None, f"no `mlops-ci {name}` verb"
        assert command.help and len(command.help) > 20, f"`mlops-ci {name}` has no useful --help"


def test_every_verb_names_the_function_that_does_its_work() -> None:
    assert sorted(VERBS) == sorted(cli.commands), "steps.VERBS and the CLI's verbs differ"
    for verb, where in VERBS.items():
        module_name, _, function = where.partition(":")
        module = importlib.import_module(f"mlops_ci.{module_name}")
        assert callable(getattr(module, function, None)), f"{verb}: no {where}"
        if module_name.startswith("steps."):  # a step's module is named as its verb
            assert module_name == "steps." + verb.replace("-", "_"), f"{verb} lives in {where}"


def test_every_step_has_its_github_action_and_azure_template() -> None:
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    for name in STEPS:
        template = root / "templates" / "azure-pipelines" / f"{name}.yml"
        assert template.is_file(), f"no templates/azure-pipelines/{name}.yml"
        if name != "promote":  # promote runs through the umbrella action (`command: promote`)
            assert (root / "actions" / name / "action.yml").is_file(), f"no actions/{name}/"
