"""HAProxy itself (`haproxy -c`) accepts the configuration the docker front renders."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from mlops_ci.serve.haproxy import (
    render_config,
)
from tests.support.haproxy import spec

pytestmark = pytest.mark.timeout(60)


@pytest.mark.skipif(shutil.which("haproxy") is None, reason="HAProxy is not installed")
def test_the_configuration_is_one_haproxy_accepts_without_a_warning(tmp_path: Path) -> None:
    (tmp_path / "pins.map").write_text("")
    config = tmp_path / "haproxy.cfg"
    config.write_text(render_config(spec(tmp_path)))
    done = subprocess.run(
        ["haproxy", "-c", "-f", str(config)], capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, done.stderr
    assert "WARNING" not in done.stderr and "ALERT" not in done.stderr, done.stderr
