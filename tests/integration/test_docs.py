"""The documentation site builds with ``mkdocs build --strict`` (a broken link or a missing
page fails it) and holds both generated references: every key of the schema and every verb."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_the_site_builds_strict_with_both_generated_references(tmp_path: Path) -> None:
    if importlib.util.find_spec("mkdocs") is None:
        pytest.skip("mkdocs is not installed (the docs extra)")
    site = tmp_path / "site"
    built = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(ROOT / "mkdocs.yml")]
        + ["--site-dir", str(site)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert built.returncode == 0, built.stderr[-3000:]
    config = (site / "config-reference" / "index.html").read_text(encoding="utf-8")
    assert "<code>gate.rules[].metric</code>" in config
    assert "<code>deploy.&lt;name&gt;.rollout.steps</code>" in config
    cli = (site / "cli-reference" / "index.html").read_text(encoding="utf-8")
    from mlops_ci.steps import VERBS

    missing = [verb for verb in VERBS if f"mlops-ci {verb}" not in cli]
    assert not missing, f"the CLI reference lacks {missing}"
    assert "Sentinel" not in cli
