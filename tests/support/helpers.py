"""Small helpers shared by tests."""

from __future__ import annotations

from mlops_ci.cli import main


def run_cli(*args: str) -> int:
    """Run `mlops-ci ARGS` in-process and return its exit code."""
    try:
        main(list(args))
    except SystemExit as done:
        return int(done.code or 0)
    return 0
