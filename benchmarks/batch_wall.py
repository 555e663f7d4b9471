"""`mlops-ci batch-score` by wall time, as a user runs it: 1 worker against 2 (issue 42).

Each job is a fresh `mlops-ci batch-score` process (Python's start, the imports, the plan, the
scoring, the exit, all timed), on the example's 50-tree forest packaged as ONNX and Parquet
rows written once, into an empty output folder. Rounds alternate 1 and 2 workers (which goes
first alternates too); the medians count. The 2-worker output is checked to equal the
1-worker output.
Targets: 2 workers >= 1.6x one from 1,000,000 rows, >= 1.3x from 300,000 rows.

Run: python benchmarks/batch_wall.py [--rows 1000000 300000] [--rounds 7]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from batch import packaged, write_rows

TARGETS = {1_000_000: 1.6, 300_000: 1.3}


def command(model_dir: Path, rows: Path, out: Path, workers: int) -> float:
    """Wall seconds of one `mlops-ci batch-score` process."""
    mlops_ci = Path(sys.executable).with_name("mlops-ci")
    argv = [str(mlops_ci), "batch-score", "--model-dir", str(model_dir), "--input", str(rows)]
    argv += ["--output", str(out), "--processes", str(workers)]
    shutil.rmtree(out, ignore_errors=True)
    started = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if done.returncode:
        raise SystemExit(f"{' '.join(argv)}: exit {done.returncode}\n{done.stderr}")
    return wall


def same_output(first: Path, second: Path) -> bool:
    import pyarrow.parquet as pq

    return bool(pq.read_table(first).equals(pq.read_table(second)))


def measure(model_dir: Path, rows: Path, work: Path, rounds: int) -> dict[int, list[float]]:
    walls: dict[int, list[float]] = {1: [], 2: []}
    outs = {w: work / f"out-{w}" for w in walls}
    for turn in range(rounds):
        for workers in (1, 2) if turn % 2 == 0 else (2, 1):
            walls[workers].append(command(model_dir, rows, outs[workers], workers))
        if turn == 0 and not same_output(outs[1], outs[2]):
            raise SystemExit(f"{rows}: 2 workers wrote other rows than 1")
    return walls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=list(TARGETS))
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-batch-wall-"))
    try:
        model_dir = packaged(work, "forest")
        results = []
        for n in args.rows:
            folder = work / f"rows-{n}"
            folder.mkdir()
            rows = write_rows(folder, n, "parquet")
            results.append((n, measure(model_dir, rows, work, args.rounds)))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"\nmlops-ci batch-score, a fresh process per job, {os.cpu_count()} cores, ")
    print(f"50-tree forest (ONNX), Parquet in, a folder of parts out; medians of {args.rounds}")
    print(f"{'rows':>10}{'1 worker':>11}{'2 workers':>11}{'ratio':>8}  target")
    for n, walls in results:
        one, two = (statistics.median(walls[w]) for w in (1, 2))
        target = max((t for size, t in TARGETS.items() if n >= size), default=None)
        verdict = ""
        if target is not None:
            verdict = f">= {target}x " + ("ok" if one / two >= target else "MISSED")
        print(f"{n:>10,}{one:>10.2f}s{two:>10.2f}s{one / two:>7.2f}x  {verdict}")
        print(f"{'':>10}  1 worker runs: {' '.join(f'{w:.2f}' for w in walls[1])}")
        print(f"{'':>10}  2 worker runs: {' '.join(f'{w:.2f}' for w in walls[2])}")


if __name__ == "__main__":
    main()
