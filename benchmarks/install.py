"""Fresh-venv installs of mlops-ci from this checkout: pip against uv, in one run.

For the core and each extra: seconds to create a venv and install into it with pip, and with
uv (``uv pip install``), with warm caches (each is installed once first, untimed), the number
of distributions and the venv's size. What the setup action pays per job is the uv figure.

Run: python benchmarks/install.py [--extras serve,github,batch,dask,kubernetes]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def install(venv: Path, target: str, tool: str) -> float:
    shutil.rmtree(venv, ignore_errors=True)
    started = time.perf_counter()
    if tool == "uv":
        subprocess.run(["uv", "venv", "--quiet", "--python", sys.executable, str(venv)], check=True)
        subprocess.run(["uv", "pip", "install", "--quiet", "--python", str(venv / "bin" / "python"),
                        target], check=True)  # fmt: skip
    else:
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet",
                        "--disable-pip-version-check", target], check=True,
                       stderr=subprocess.DEVNULL)  # fmt: skip
    return time.perf_counter() - started


def size_mb(folder: Path) -> float:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()) / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--extras", default="serve,github,batch,dask,kubernetes")
    args = parser.parse_args()
    if shutil.which("uv") is None:
        sys.exit("uv is not on PATH: pip install uv")
    work = Path(tempfile.mkdtemp(prefix="bench-install-"))
    rows = []
    for extra in ["", *[e for e in args.extras.split(",") if e]]:
        target = f"{ROOT}[{extra}]" if extra else str(ROOT)
        venv = work / "venv"
        install(venv, target, "uv")  # warm both caches, untimed
        install(venv, target, "pip")
        pip_s = install(venv, target, "pip")
        uv_s = install(venv, target, "uv")
        listed = subprocess.run(["uv", "pip", "list", "--python", str(venv / "bin" / "python")],
                                capture_output=True, text=True, check=True).stdout  # fmt: skip
        dists = len(listed.splitlines()) - 2  # two header lines
        rows.append((extra or "core", pip_s, uv_s, dists, size_mb(venv)))
    print(f"\n{'install':<12}{'pip s':>8}{'uv s':>8}{'pip/uv':>8}{'dists':>7}{'venv MB':>9}")
    for name, pip_s, uv_s, dists, mb in rows:
        print(f"{name:<12}{pip_s:>8.1f}{uv_s:>8.1f}{pip_s / uv_s:>8.1f}{dists:>7}{mb:>9.0f}")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
