"""The real CLI (`python -m mlops_ci`): a hostile argument reaches the terminal escaped."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from mlops_ci.steps.demo import copy_example
from tests.support.terminal import HOSTILE

pytestmark = pytest.mark.timeout(120)


def test_a_hostile_argument_reaches_the_terminal_escaped(tmp_path: Path) -> None:
    """The real CLI: a bad --param holding ESC, CR, U+202E and a newline that would start a
    GitHub workflow command is refused on one line (exit 2) with all of it escaped."""
    project = copy_example(tmp_path / "iris")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "mlops_ci",
            "train",
            "--param",
            f"{HOSTILE.replace(chr(0), '')}\n::error::pwned",
        ],
        capture_output=True,
        text=True,
        cwd=project,
        env={"PATH": "/usr/bin:/bin", "GITHUB_ACTIONS": "true"},
        timeout=90,
    )
    assert done.returncode == 2, done.stderr
    assert "\x1b" not in done.stderr + done.stdout and "\r" not in done.stderr
    assert "\u202e" not in done.stderr + done.stdout
    error = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(error) == 1 and "\\x1b[2J" in error[0] and "\\n::error::pwned" in error[0]
    assert not [
        line
        for line in done.stdout.splitlines()
        if "pwned" in line and line.startswith("::error::pwned")
    ]
