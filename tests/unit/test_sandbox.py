"""sandbox: which isolation train.isolation gets, and what a launch hands to subprocess (no
process is started here: tests/integration/test_sandbox.py runs bwrap)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mlops_ci import sandbox
from mlops_ci.errors import InputError
from mlops_ci.sandbox import Isolation, isolation_for, launch

MISSING = Isolation(None, "bwrap is not installed")
WORKS = Isolation(sandbox.BUBBLEWRAP, "namespaces", "/usr/bin/bwrap")


def test_required_refuses_where_no_sandbox_works_and_auto_says_why(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(sandbox, "probe", lambda: MISSING)
    with pytest.raises(InputError, match="train.isolation: required, but bwrap is not") as err:
        isolation_for("required")
    assert err.value.exit_code == 2
    assert isolation_for("auto").line == "not isolated: bwrap is not installed"
    assert isolation_for("off").line == "not isolated: train.isolation is off"
    monkeypatch.setattr(sandbox, "probe", lambda: WORKS)
    assert isolation_for("required").line.startswith("isolated by bubblewrap")
    assert isolation_for("off").mechanism is None


def test_a_launch_without_a_sandbox_is_the_command_as_it_was(tmp_path: Path) -> None:
    with launch(MISSING, ["python", "train.py"], {"A": "1"}, tmp_path, tmp_path) as run:
        assert (run.argv, run.env, run.pass_fds) == (["python", "train.py"], {"A": "1"}, ())


def test_bwrap_starts_from_an_empty_environment_and_no_value_is_in_its_argv(
    tmp_path: Path,
) -> None:
    (tmp_path / ".mlops").mkdir()
    env = {"PATH": "/usr/bin", "AWS_SECRET_ACCESS_KEY": "data-credential-1234"}
    with launch(WORKS, ["python", "train.py"], env, tmp_path, tmp_path) as run:
        assert run.env == {}, "bwrap is PID 1 of the sandbox: its own environment is readable"
        assert run.argv[:3] == ["/usr/bin/bwrap", "--args", str(run.pass_fds[0])]
        assert run.argv[-3:] == ["--", "python", "train.py"]
        assert "data-credential-1234" not in " ".join(run.argv)  # ps and /proc/1/cmdline
        os.lseek(run.pass_fds[0], 0, os.SEEK_SET)
        args = os.read(run.pass_fds[0], 1 << 20).decode().split("\0")
    assert args[
        args.index("AWS_SECRET_ACCESS_KEY") - 1 : args.index("AWS_SECRET_ACCESS_KEY") + 2
    ] == ["--setenv", "AWS_SECRET_ACCESS_KEY", "data-credential-1234"]
    project = str(tmp_path.resolve())
    assert ["--bind", project, project] == args[args.index(project) - 1 : args.index(project) + 2]
    guarded = str(tmp_path.resolve() / ".mlops")
    assert ["--ro-bind", guarded, guarded] == args[
        args.index(guarded) - 1 : args.index(guarded) + 2
    ]
    assert args[args.index("--cap-drop") : args.index("--cap-drop") + 2] == ["--cap-drop", "ALL"]
    assert {"--unshare-user", "--unshare-pid", "--disable-userns", "--die-with-parent"} <= set(args)
    assert args[args.index("/run") - 1 : args.index("/run") + 1] == ["--tmpfs", "/run"]
