"""The CLI (mlops_ci/cli/__init__.py): every verb has help a newcomer understands; no error line
it prints shows a credential."""

from __future__ import annotations

import pytest

from mlops_ci.cli import cli, project
from mlops_ci.errors import InputError, ServiceError
from tests.support.helpers import run_cli


def test_every_verb_has_help_a_newcomer_understands() -> None:
    for name, command in cli.commands.items():
        assert command.help and len(command.help) > 30, f"`mlops-ci {name}` --help is too thin"
        for param in command.params:
            if param.param_type_name == "option" and param.name not in ("help",):
                assert getattr(param, "help", None), f"`mlops-ci {name}` {param.opts} has no help"


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (RuntimeError("bad answer from http://alice:pwSECRET1@h:5000/api"), 4),
        (ServiceError("MLflow rejected pwSECRET1", hint="check http://a:pwSECRET1@h"), 3),
        (InputError("no run in http://alice:pwSECRET1@h:5000"), 2),
    ],
)
def test_an_error_line_shows_no_credential(
    error: Exception, code: int, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Whatever the exit code, its lines (the error, the hint, the --debug traceback and the
    CI annotation) show neither the password of the tracking URI nor a secret variable."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://alice:pwSECRET1@h:5000")
    monkeypatch.setenv("GITHUB_ACTIONS", "true")

    def fail(config_path: object) -> None:
        raise error

    monkeypatch.setattr(project, "load", fail)
    assert run_cli("--debug", "train") == code
    out, err = capsys.readouterr()
    assert "SECRET" not in out + err, out + err
    assert "error: " in err and "***" in err and "Traceback" in err
