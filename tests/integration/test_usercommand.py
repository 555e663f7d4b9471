"""The user's training command, run by a real train: what reaches its environment."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from mlops_ci.config.types import load_config


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


def test_a_command_that_writes_no_model_never_loses_the_file_that_was_there(
    project: Path, fake_registry: Any
) -> None:
    """A model handed over by a colleague at train.outputs.model and a command that writes
    nothing: train says so, and the file is where it was, byte for byte (it was deleted)."""
    import pytest

    from mlops_ci.errors import TrainingError
    from mlops_ci.steps.train import train as train_step

    (project / "nomodel.py").write_text(
        "from pathlib import Path\nPath('outputs/metrics.json').write_text('{}')\n"
    )
    config_file = project / "mlops.yaml"
    text = config_file.read_text().replace("{python} train.py", "{python} nomodel.py")
    config_file.write_text(text.replace("    - {metric: cv_accuracy, min: 0.85}\n", ""))
    config = load_config(project)
    handed = config.resolve(config.train.model_output)
    handed.parent.mkdir(parents=True, exist_ok=True)
    handed.write_bytes(b"the only copy of a colleague's model")
    with pytest.raises(TrainingError, match="wrote no model.*back in place"):
        train_step(config, fake_registry)
    assert handed.read_bytes() == b"the only copy of a colleague's model"
