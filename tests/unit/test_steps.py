from __future__ import annotations

import importlib
import json
import os
import re
from pathlib import Path
from typing import Any

from mlops_ci.cli import cli
from mlops_ci.config.types import load_config
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


def test_every_verb_has_help_a_newcomer_understands() -> None:
    for name, command in cli.commands.items():
        assert command.help and len(command.help) > 30, f"`mlops-ci {name}` --help is too thin"
        for param in command.params:
            if param.param_type_name == "option" and param.name not in ("help",):
                assert getattr(param, "help", None), f"`mlops-ci {name}` {param.opts} has no help"


def test_the_training_command_gets_no_credentials(project: Path, fake_registry: Any) -> None:
    """A real train whose command dumps its environment: no CI, registry or mlops-ci
    credential, no webhook signing secret, the tracking URI without its userinfo."""
    from mlops_ci.pipeline.usercommand import SECRET_VARIABLES
    from mlops_ci.steps.train import train as train_step

    (project / "envdump.py").write_text(
        "import json, os, runpy\n"
        "json.dump(dict(os.environ), open('env.json', 'w'))\n"
        "runpy.run_path('train.py', run_name='__main__')\n"
    )
    config_file = project / "mlops.yaml"
    text = config_file.read_text().replace("{python} train.py", "{python} envdump.py")
    text += (
        "\nnotify:\n  webhooks:\n    - {url: 'https://hooks.example/ml', events: [run.completed],"
        " secret_env: Ml_Hook_Secret}\nserve:\n  admin_token_env: MY_ADMIN\n"
    )
    config_file.write_text(text)
    env = {
        **{k: v for k, v in os.environ.items() if k.upper() not in SECRET_VARIABLES},
        **{name: f"{name}-SECRET" for name in SECRET_VARIABLES},
        "gh_token": "lower-SECRET",
        "INPUT_GITHUB-TOKEN": "input-SECRET",  # act-based runners give composite steps inputs
        "SECRET_MLFLOW_PASSWORD": "azure-variable-SECRET",
        "ML_HOOK_SECRET": "hook-SECRET",
        "MY_ADMIN": "admin-SECRET",
        "MLFLOW_TRACKING_URI": "https://alice:p@ssSECRET@mlflow.example:5000/?token=QSECRET&x=1",
        "AWS_ACCESS_KEY_ID": "data-access-stays",
    }
    train_step(load_config(project), fake_registry, env=env)
    seen = json.loads((project / "env.json").read_text())
    assert "SECRET" not in json.dumps(seen), {k: v for k, v in seen.items() if "SECRET" in v}
    assert seen["MLFLOW_TRACKING_URI"] == "https://mlflow.example:5000/?token=***&x=1"
    assert seen["AWS_ACCESS_KEY_ID"] == "data-access-stays"
    assert "MLOPS_PARAMS" in seen


def test_train_help_lists_every_variable_it_strips() -> None:
    from mlops_ci.pipeline.usercommand import SECRET_PREFIXES, SECRET_VARIABLES, URI_VARIABLES

    words = set(re.findall(r"[A-Z_]+", cli.commands["train"].help or ""))
    assert set(SECRET_VARIABLES) <= words, set(SECRET_VARIABLES) - words
    assert set(URI_VARIABLES) <= words
    assert all(f"{prefix}*" in (cli.commands["train"].help or "") for prefix in SECRET_PREFIXES)
    assert "secret_env" in (cli.commands["train"].help or "")


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
        "from mlops_ci.cli import common as cli\n"
        "usual = gc.get_threshold()\n"
        "cli.defer_gc()\n"
        "assert gc.get_threshold() == cli.STARTUP_GC_THRESHOLD, gc.get_threshold()\n"
        "assert gc.get_freeze_count() == 0\n"
        "cli.settle_gc()\n"
        "assert gc.get_threshold() == usual and gc.get_freeze_count() > 0\n"
        "frozen = gc.get_freeze_count()\n"
        "cli.settle_gc()  # once only\n"
        "assert gc.get_freeze_count() == frozen\n"
        "print('ok')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert done.stdout.strip() == "ok", done.stderr
