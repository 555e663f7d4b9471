"""User strings reach the terminal and CI logs as text: no escape sequence, CR, bidi override
or workflow command takes effect."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from mlops_ci.report.markdown import one_line
from mlops_ci.steps.demo import copy_example
from mlops_ci.ui.printable import multi_line, single_line

pytestmark = pytest.mark.timeout(120)

HOSTILE = "a\x1b[2J\x1b]0;pwned\x07b\rc\u202ed\x00e\x9bf"


def test_controls_and_bidi_are_shown_escaped() -> None:
    out = single_line(HOSTILE + "\n::error::x\t##vso[task.complete]y")
    assert out == (
        "a\\x1b[2J\\x1b]0;pwned\\x07b\\x0dc\\u202ed\\x00e\\x9bf\\n::error::x\\t#\u200b#vso[task.complete]y"
    )
    assert (
        multi_line("ok\n::error::x\n  ::add-mask::y")
        == "ok\n:\u200b:error::x\n  :\u200b:add-mask::y"
    )
    assert one_line(f"  {HOSTILE}\n z ") == "a\\x1b[2J\\x1b]0;pwned\\x07b c\\u202ed\\x00e\\x9bf z"
    assert multi_line("plain: naïve — 日本") == "plain: naïve — 日本"


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
