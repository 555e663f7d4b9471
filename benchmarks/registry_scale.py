"""compare + register against an MLflow server as its registry grows to 1,000 versions.

Starts `mlflow server` (SQLite backend) on loopback, adds 10,000 runs to the experiment (for the
train cache lookup) and grows the model to 10, 100 and 1,000 versions; at each size it trains a
candidate (not timed) and times `compare` + `register`, the cache lookup and `versions --tag`
(one tagged version among them, found by the registry's filter; median of 5), in one run.
Target (issue 10): compare + register <= 2 s at 1,000 versions, growing no worse than
logarithmically (the steps look up by alias and by run, never list every version).

Needs the full `mlflow` package (the test extra). Run: python benchmarks/registry_scale.py
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.mlflow_server import mlflow_server  # noqa: E402


def fill_runs(client: object, experiment_id: str, count: int) -> None:
    for i in range(count):
        client.create_run(  # type: ignore[attr-defined]
            experiment_id, tags={"mlops.cache_key": f"filler-{i}", "mlops.complete": "true"}
        )


def main() -> None:
    from mlops_ci.config.types import load_config
    from mlops_ci.registry.mlflow import MlflowRegistry
    from mlops_ci.steps.compare import compare
    from mlops_ci.steps.demo import copy_example
    from mlops_ci.steps.register import register
    from mlops_ci.steps.tag import tag
    from mlops_ci.steps.train import train
    from mlops_ci.steps.versions import versions

    work = Path(tempfile.mkdtemp(prefix="bench-registry-"))
    project = copy_example(work / "iris")
    with mlflow_server(work) as url:
        os.environ["MLFLOW_TRACKING_URI"] = url
        config = load_config(project)
        reg = MlflowRegistry.for_config(config)
        name = config.model.name
        first = train(config, reg)
        compare(config, reg, first.run_id)
        register(config, reg, first.run_id)
        reg.set_alias(name, "production", "1")
        tag(config, reg, "1", {"team": "fraud"})  # the one version `versions --tag` must find
        model = reg.get_version(name, "1")
        exp_id = reg.client.get_experiment_by_name(config.registry.experiment).experiment_id
        started = time.perf_counter()
        fill_runs(reg.client, exp_id, 10_000)
        print(f"added 10,000 runs in {time.perf_counter() - started:.0f}s", flush=True)
        source = model.source
        model_id = source.removeprefix("models:/")
        rows = []
        size = 1
        for target in (10, 100, 1_000):
            while size < target - 1:  # leave room for the measured register
                reg.client.create_model_version(
                    name, source=source, run_id=model.run_id, model_id=model_id
                )
                size += 1
            candidate = train(config, reg, overrides={"C": 1.0 + target / 10_000})
            t0 = time.perf_counter()
            verdict = compare(config, reg, candidate.run_id).verdict
            t1 = time.perf_counter()
            created = register(config, reg, candidate.run_id, force=True)
            t2 = time.perf_counter()
            cached = reg.find_cached_run(config.registry.experiment, candidate.cache_key)
            t3 = time.perf_counter()
            lookups = []
            for _ in range(5):  # the median of five: one call is a few milliseconds
                started = time.perf_counter()
                found = versions(config, reg, {"team": "fraud"}, limit=20)
                lookups.append(time.perf_counter() - started)
            t4 = t3 + sorted(lookups)[2]
            size = int(created.version)
            assert cached is not None and cached.run_id == candidate.run_id
            assert [r.version for r in found] == ["1"]
            rows.append((size, t1 - t0, t2 - t1, t3 - t2, t4 - t3, verdict))
    print(
        f"\n{'versions':>9}{'compare s':>11}{'register s':>12}{'both s':>9}{'cache lookup s':>16}"
        f"{'versions --tag s':>18}"
    )
    for size, c, r, k, v, verdict in rows:
        print(
            f"{size:>9,}{c:>11.3f}{r:>12.3f}{c + r:>9.3f}{k:>16.3f}{v:>18.3f}   (verdict {verdict})"
        )
    print(f"versions --tag at 1,000 versions / at 10: {rows[-1][4] / rows[0][4]:.2f}x")
    base = rows[0][1] + rows[0][2]
    print(
        f"compare + register at 1,000 versions / at 10: {(rows[-1][1] + rows[-1][2]) / base:.2f}x "
        "(target: <= 2 s at 1,000, growth no worse than logarithmic: log(1000)/log(10) = 3x)"
    )
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
