"""Drift on 1,000,000 rows in bounded memory: time and peak memory, against loading it whole.

Writes a 1,000,000-row current file (CSV and Parquet) drawn from the iris example with one
feature shifted, then runs, each in a fresh process so its peak RSS is its own:
  - baseline: pandas reads the whole file and scipy tests every feature on all rows;
  - `mlops-ci drift` streaming the same file in chunks of monitor.drift.chunk_rows.
Prints seconds and peak RSS of each and the memory ratio. Target: the streamed check's peak
memory stays flat as rows grow (it holds one chunk and fixed-size sketches).

Run: python benchmarks/drift_scale.py [ROWS]
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
BASELINE = """
import sys, numpy as np, pandas as pd
from scipy.stats import ks_2samp
ref = pd.read_csv(sys.argv[1]); cur = pd.read_csv(sys.argv[2]) if sys.argv[2].endswith('.csv') \\
    else pd.read_parquet(sys.argv[2])
for c in ref.columns:
    if c != 'species':
        ks_2samp(ref[c].to_numpy(), cur[c].to_numpy())
"""


def write_current(folder: Path, rows: int) -> tuple[Path, Path]:
    reference = pd.read_csv(ROOT / "examples" / "iris" / "data" / "train.csv")
    parts = []
    for start in range(0, rows, 250_000):
        n = min(250_000, rows - start)
        part = reference.sample(n, replace=True, random_state=start).drop(columns=["species"])
        part["petal_length"] += 1.0
        parts.append(part)
    frame = pd.concat(parts, ignore_index=True)
    csv, parquet = folder / "current.csv", folder / "current.parquet"
    frame.to_csv(csv, index=False)
    frame.to_parquet(parquet)
    return csv, parquet


def measure(command: list[str], cwd: Path) -> tuple[float, float, int]:
    """(seconds, peak RSS MiB, exit code) of one child process, from its own rusage.

    A forked child counts the parent's resident pages until it execs, so this process never
    holds the data itself."""
    started = time.perf_counter()
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(command, cwd=cwd, stdout=subprocess.DEVNULL, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - started
        code = os.waitstatus_to_exitcode(status)
        proc.returncode = code
        if code not in (0, 1):
            err.seek(0)
            raise RuntimeError(err.read().decode(errors="replace")[-2000:])
    return seconds, usage.ru_maxrss / 1024, code


def main() -> None:
    if sys.argv[1:2] == ["--write"]:  # in a child, so this process stays small (see measure)
        write_current(Path(sys.argv[2]), int(sys.argv[3]))
        return
    rows = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    work = Path(tempfile.mkdtemp(prefix="bench-drift-"))
    project = work / "iris"
    shutil.copytree(ROOT / "examples" / "iris", project)
    print(f"writing {rows:,} rows ...", flush=True)
    subprocess.run([sys.executable, __file__, "--write", str(work), str(rows)], check=True)
    csv, parquet = work / "current.csv", work / "current.parquet"
    print(
        f"current.csv {csv.stat().st_size / 2**20:.0f} MiB, current.parquet "
        f"{parquet.stat().st_size / 2**20:.0f} MiB"
    )
    results = []
    cli = [sys.executable, "-m", "mlops_ci", "drift", "-c", str(project)]
    small = work / "small.csv"
    with open(csv) as src, open(small, "w") as dst:
        for i, line in enumerate(src):
            if i > rows // 10:
                break
            dst.write(line)
    floor = [sys.executable, "-c", "import mlops_ci.cli, mlops_ci.steps.drift, scipy.stats"]
    for label, command in (
        ("floor: the process with the drift code imported, no data", floor),
        (f"streamed drift, {rows // 10:,} rows CSV", [*cli, "--current", str(small)]),
        (f"streamed drift, {rows:,} rows CSV", [*cli, "--current", str(csv)]),
        (f"streamed drift, {rows:,} rows Parquet", [*cli, "--current", str(parquet)]),
        (
            f"baseline: pandas whole-file + scipy, {rows:,} rows CSV",
            [sys.executable, "-c", BASELINE, str(project / "data" / "train.csv"), str(csv)],
        ),
    ):
        seconds, peak, code = measure(command, work)
        results.append((label, seconds, peak, code))
    print(f"\n{'run':<58}{'seconds':>9}{'peak RSS MiB':>14}")
    for label, seconds, peak, code in results:
        verdict = {0: "", 1: "  (drift found: exit 1)"}.get(code, "")
        print(f"{label:<58}{seconds:>9.1f}{peak:>14.0f}{verdict}")
    record = json.loads((project / ".mlops" / "drift.json").read_text())
    flagged = [f["name"] for f in record["features"] if f["drifted"] and f["kind"] != "prediction"]
    print(f"\nlast streamed check: verdict {record['verdict']}, drifted {flagged}")
    floor_mb, tenth, full, base = (r[2] for r in (results[0], results[1], results[2], results[-1]))
    print(
        f"above the floor: streamed {rows // 10:,} rows +{tenth - floor_mb:.0f} MiB, "
        f"{rows:,} rows +{full - floor_mb:.0f} MiB; whole-file baseline +{base - floor_mb:.0f} MiB"
    )
    shutil.rmtree(work)


if __name__ == "__main__":
    main()
