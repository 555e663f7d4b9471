"""Each registry verb as a whole process, against the floor any of them pays, in one run.

The floor: a Python process that imports mlflow and makes one call to the same SQLite store
(``MlflowClient.search_registered_models``). The verbs, on the iris example with v1 in
production and a second run compared: ``status``, ``report``, cached ``train``, ``promote``
(to an alias it already holds: nothing moves), ``compare``. Each is the median of --runs,
alternated with the floor so the machine's drift hits both alike.

Targets (issue 18): every registry verb <= 1.1x the floor; compare <= 1.5x. mlops-ci's command
paces the garbage collector while it starts (a quarter of a second of MLflow's start-up); the
"x paced" column divides by a floor that does the same, so what is left is mlops-ci's own work.
Run: python benchmarks/cli_steps.py [--runs N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

FLOOR = (
    "import mlflow; from mlflow import MlflowClient; "
    "MlflowClient('{uri}', registry_uri='{uri}').search_registered_models(max_results=1)"
)
# The same process pacing its garbage collector as mlops-ci's command does (mlops_ci.cli.common:
# collection deferred while it starts, the start-up's objects frozen once the registry is
# open, so neither later collections nor the one at exit walk them again): the floor of what
# is left once that is taken out of the ratio.
PACED_FLOOR = "import gc; gc.set_threshold(50_000, 20, 20); " + FLOOR + "; gc.freeze()"


def project(work: Path) -> tuple[Path, str]:
    """The demo's state: v1 registered and in production, a second run trained and compared."""
    from mlops_ci.config.types import load_config
    from mlops_ci.registry.mlflow import MlflowRegistry
    from mlops_ci.registry.tracking import resolve_tracking_uri
    from mlops_ci.steps.compare import compare
    from mlops_ci.steps.demo import copy_example
    from mlops_ci.steps.promote import promote
    from mlops_ci.steps.register import register
    from mlops_ci.steps.train import train

    os.environ.pop("MLFLOW_TRACKING_URI", None)
    root = copy_example(work / "iris")
    config = load_config(root)
    reg = MlflowRegistry.for_config(config)
    first = train(config, reg)
    compare(config, reg, first.run_id)
    version = register(config, reg, first.run_id)
    promote(config, reg, version.version, by="benchmark", reason="benchmark")
    second = train(config, reg, overrides={"C": 0.5})
    compare(config, reg, second.run_id)
    uri, _source = resolve_tracking_uri(config)
    return root, uri


def seconds(argv: list[str], cwd: Path, ok: tuple[int, ...] = (0,)) -> float:
    started = time.perf_counter()
    done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if done.returncode not in ok:
        raise RuntimeError(f"{' '.join(argv)} exited {done.returncode}: {done.stderr[-600:]}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    root, uri = project(Path(tempfile.mkdtemp(prefix="bench-cli-")))
    cli = [sys.executable, "-m", "mlops_ci"]
    verbs = {
        "status": [*cli, "status"],
        "report": [*cli, "report"],
        "train (cached)": [*cli, "train", "--param", "C=0.5"],
        "promote (held)": [*cli, "promote", "--version", "1", "--reason", "benchmark"],
        "compare": [*cli, "compare"],
    }
    floor_argv = [sys.executable, "-c", FLOOR.format(uri=uri)]
    paced_argv = [sys.executable, "-c", PACED_FLOOR.format(uri=uri)]
    times: dict[str, list[float]] = {name: [] for name in ["floor", "paced floor", *verbs]}
    for _ in range(args.runs):
        for name, argv in verbs.items():
            times["floor"].append(seconds(floor_argv, root))
            times["paced floor"].append(seconds(paced_argv, root))
            times[name].append(seconds(argv, root, ok=(0, 1)))  # 1: a gate that refuses
    floor = statistics.median(times["floor"])
    paced = statistics.median(times["paced floor"])
    print(
        f"\n{'step':<18}{'median s':>10}{'x floor':>9}{'x paced':>9}   "
        f"({args.runs} runs each, alternated)"
    )
    print(f"{'floor':<18}{floor:>10.2f}{1:>9.2f}{floor / paced:>9.2f}   import mlflow + one call")
    print(f"{'paced floor':<18}{paced:>10.2f}{paced / floor:>9.2f}{1:>9.2f}   the same, GC paced")
    for name in verbs:
        value = statistics.median(times[name])
        target = 1.5 if name == "compare" else 1.1
        print(
            f"{name:<18}{value:>10.2f}{value / floor:>9.2f}{value / paced:>9.2f}   "
            f"target <= {target}x the floor"
        )


if __name__ == "__main__":
    main()
