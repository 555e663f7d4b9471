"""The setup action's install script on a stand-in package (a console script ``mlops-ci`` that
prints its version): uv when it can be had, pip when uv fails, a venv with pip either way."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

INSTALL = Path(__file__).resolve().parents[2] / "actions" / "setup" / "install.sh"


def _package(where: Path) -> Path:
    src = where / "pkg"
    (src / "standin").mkdir(parents=True)
    (src / "standin" / "__init__.py").write_text(
        "def main() -> None:\n    print('mlops-ci, version 9.9.9')\n"
    )
    (src / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["hatchling"]\nbuild-backend = "hatchling.build"\n'
        '[project]\nname = "standin"\nversion = "9.9.9"\n'
        '[project.scripts]\nmlops-ci = "standin:main"\n'
        '[tool.hatch.build.targets.wheel]\npackages = ["standin"]\n'
    )
    return src


def _install(tmp_path: Path, path_dirs: list[Path]) -> tuple[dict[str, str], Path]:
    runner_temp = tmp_path / "runner"
    runner_temp.mkdir()
    out, github_path = tmp_path / "output", tmp_path / "path"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("UV_", "VIRTUAL_ENV"))},
        "PATH": os.pathsep.join([*map(str, path_dirs), "/usr/bin", "/bin"]),
        "RUNNER_TEMP": str(runner_temp),
        "GITHUB_OUTPUT": str(out),
        "GITHUB_PATH": str(github_path),
        "MLOPS_CI_PYTHON": sys.executable,
        "MLOPS_CI_EXTRAS": "",
    }
    done = subprocess.run(
        ["bash", str(INSTALL), str(_package(tmp_path))],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    outputs = dict(line.split("=", 1) for line in out.read_text().splitlines())
    return outputs, Path(github_path.read_text().strip())


@pytest.mark.timeout(300)
def test_uv_makes_a_venv_with_pip_in_it(tmp_path: Path) -> None:
    outputs, bin_dir = _install(tmp_path, [])
    assert outputs == {"version": "9.9.9", "installer": "uv"}
    assert (bin_dir / "mlops-ci").exists()
    # a later `pip install` in the job lands in this venv, beside mlops-ci
    assert (bin_dir / "pip").exists()


@pytest.mark.timeout(300)
def test_pip_installs_when_uv_fails(tmp_path: Path) -> None:
    broken = tmp_path / "broken-uv"
    broken.mkdir()
    uv = broken / "uv"
    uv.write_text("#!/bin/sh\necho 'uv: cannot work here' >&2\nexit 1\n")
    uv.chmod(uv.stat().st_mode | stat.S_IXUSR)
    outputs, bin_dir = _install(tmp_path, [broken])
    assert outputs == {"version": "9.9.9", "installer": "pip"}
    assert (bin_dir / "mlops-ci").exists() and (bin_dir / "pip").exists()
