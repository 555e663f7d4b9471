"""The CLI as a process: what `--help` imports, and how a verb's process paces the collector."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def test_help_does_not_import_heavy_libraries() -> None:
    code = (
        "import sys\n"
        "from mlops_ci.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "names = ('mlflow', 'sklearn', 'pandas', 'numpy', 'onnxruntime', 'skl2onnx',\n"
        "         'jsonschema')\n"
        "heavy = [m for m in names if m in sys.modules]\n"
        "print('HEAVY', heavy)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert "Usage: mlops-ci" in out
    assert "HEAVY []" in out


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
