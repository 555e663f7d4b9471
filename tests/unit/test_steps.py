from __future__ import annotations

import importlib
from pathlib import Path

from mlops_ci.cli import cli
from mlops_ci.steps import STEPS


def test_every_step_has_a_module_a_verb_and_help() -> None:
    for name in STEPS:
        module = importlib.import_module(f"mlops_ci.steps.{name}")
        assert callable(getattr(module, name)), f"steps/{name}.py has no {name}()"
        command = cli.commands.get(name)
        assert command is not None, f"no `mlops-ci {name}` verb"
        assert command.help and len(command.help) > 20, f"`mlops-ci {name}` has no useful --help"


def test_every_step_has_its_github_action_and_azure_template() -> None:
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    for name in STEPS:
        template = root / "templates" / "azure-pipelines" / f"{name}.yml"
        assert template.is_file(), f"no templates/azure-pipelines/{name}.yml"
        if name != "promote":  # promote runs through the umbrella action (`command: promote`)
            assert (root / "actions" / name / "action.yml").is_file(), f"no actions/{name}/"


def test_every_verb_has_help_a_newcomer_understands() -> None:
    for name, command in cli.commands.items():
        assert command.help and len(command.help) > 30, f"`mlops-ci {name}` --help is too thin"
        for param in command.params:
            if param.param_type_name == "option" and param.name not in ("help",):
                assert getattr(param, "help", None), f"`mlops-ci {name}` {param.opts} has no help"


def test_the_training_command_gets_no_credentials() -> None:
    from mlops_ci.steps.train import command_environment

    env = {
        "PATH": "/bin",
        "AWS_ACCESS_KEY_ID": "data-access-stays",
        "GITHUB_TOKEN": "x",
        "gh_token": "x",
        "SYSTEM_ACCESSTOKEN": "x",
        "MLFLOW_TRACKING_PASSWORD": "x",
        "MY_ADMIN": "x",
    }
    assert command_environment(env, "MY_ADMIN") == {
        "PATH": "/bin",
        "AWS_ACCESS_KEY_ID": "data-access-stays",
    }


def test_a_command_process_paces_the_collector_until_the_registry_is_open(
    tmp_path: Path,
) -> None:
    """`mlops-ci VERB` defers collection while MLflow loads, then freezes what start-up made
    and gives the collector its usual pace back (in a process of its own: freezing would
    outlive this test)."""
    import subprocess
    import sys

    script = (
        "import gc\n"
        "from mlops_ci import cli\n"
        "usual = gc.get_threshold()\n"
        "cli._defer_gc()\n"
        "assert gc.get_threshold() == cli._STARTUP_GC_THRESHOLD, gc.get_threshold()\n"
        "assert gc.get_freeze_count() == 0\n"
        "cli._settle_gc()\n"
        "assert gc.get_threshold() == usual and gc.get_freeze_count() > 0\n"
        "frozen = gc.get_freeze_count()\n"
        "cli._settle_gc()  # once only\n"
        "assert gc.get_freeze_count() == frozen\n"
        "print('ok')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert done.stdout.strip() == "ok", done.stderr
