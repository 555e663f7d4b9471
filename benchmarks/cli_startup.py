"""Time `mlops-ci --help` against a bare Python start, in the same run.

Target (issue 2): under 0.3 s on the project's machine. Run: python benchmarks/cli_startup.py
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time

RUNS = 20


def median_seconds(argv: list[str]) -> float:
    times = []
    for _ in range(RUNS):
        start = time.perf_counter()
        subprocess.run(argv, capture_output=True, check=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    baseline = median_seconds([sys.executable, "-c", "pass"])
    cli = median_seconds([sys.executable, "-m", "mlops_ci", "--help"])
    print(f"python -c pass          median {baseline * 1000:6.1f} ms  ({RUNS} runs)")
    print(
        f"mlops-ci --help         median {cli * 1000:6.1f} ms  ({cli / baseline:.1f}x bare Python)"
    )
    print(f"target < 300 ms: {'met' if cli < 0.3 else 'MISSED'}")


if __name__ == "__main__":
    main()
