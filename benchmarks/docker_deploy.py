"""A docker deployment under load: failed requests while the version changes, and what the
front costs against the same image answering directly, in one run.

Packages two versions of the iris example (images built on the engine that DOCKER_HOST names;
eval "$(../shared/tools/container-engine.sh)" starts one), deploys v1 to a docker environment,
then deploys v2 through canary steps while client threads score single rows, and prints the
requests answered per version and the ones that failed. Then it measures single-row /score
through the front and, as the baseline, straight to a container of the same image with its port
published: wrk (Debian's package) at 1 and 8 connections, the two alternated for --rounds
rounds, and prints each round, the median req/s and p99 of each and their ratios.

Targets: 0 failed requests during a docker deploy under load (issue 15); the front at >= 0.85x
the direct req/s at 1 and 8 connections, its p99 <= 1.3x the direct p99 (issue 29).

Run: python benchmarks/docker_deploy.py [--clients 4] [--seconds 4] [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
from _wrk import alternated, wrk_path

ROW = {"inputs": [[5.1, 3.5, 1.4, 0.2]]}


def hammer(url: str, stop: threading.Event, results: Counter[str]) -> None:
    with httpx.Client(base_url=url, timeout=10) as http:
        while not stop.is_set():
            try:
                answer = http.post("/score", json=ROW)
                key = answer.json().get("model_version") if answer.status_code == 200 else None
                results[f"v{key}" if key else f"HTTP {answer.status_code}"] += 1
            except httpx.HTTPError as err:
                results[type(err).__name__] += 1


def front_vs_direct(front: str, direct: str, seconds: float, rounds: int) -> bool:
    """Alternated wrk rounds on both URLs at 1 and 8 connections; True when the targets hold."""
    met = True
    for connections in (1, 8):
        urls = {"front": f"{front}/score", "direct": f"{direct}/score"}
        runs = alternated(urls, ROW, connections, rounds, seconds)
        for turn, (f, d) in enumerate(zip(runs["front"], runs["direct"], strict=True)):
            print(f"  {connections} conn, round {turn + 1}: front {f.rps:,.0f} req/s "
                  f"p99 {f.p99_ms:.2f} ms, direct {d.rps:,.0f} req/s p99 {d.p99_ms:.2f} ms, "
                  f"errors {f.errors}/{d.errors}")  # fmt: skip
        rps = {k: statistics.median(r.rps for r in v) for k, v in runs.items()}
        p99 = {k: statistics.median(r.p99_ms for r in v) for k, v in runs.items()}
        ratio, p99_ratio = rps["front"] / rps["direct"], p99["front"] / p99["direct"]
        errors = sum(r.errors for v in runs.values() for r in v)
        ok = ratio >= 0.85 and p99_ratio <= 1.3 and errors == 0
        met &= ok
        print(f"single-row /score, {connections} connection(s), medians of {rounds}: "
              f"front {rps['front']:,.0f} req/s (p99 {p99['front']:.2f} ms), direct "
              f"{rps['direct']:,.0f} req/s (p99 {p99['direct']:.2f} ms): front/direct "
              f"{ratio:.2f}x (target >= 0.85), p99 {p99_ratio:.2f}x (target <= 1.3), "
              f"errors {errors} [{'met' if ok else 'NOT met'}]")  # fmt: skip
    return met


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=4.0, help="of each wrk round")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    from mlops_ci.config.types import load_config
    from mlops_ci.packaging.image import engine
    from mlops_ci.registry.mlflow import MlflowRegistry
    from mlops_ci.steps.compare import compare
    from mlops_ci.steps.demo import copy_example
    from mlops_ci.steps.deploy import deploy
    from mlops_ci.steps.package import package
    from mlops_ci.steps.register import register
    from mlops_ci.steps.train import train
    from mlops_ci.steps.undeploy import undeploy
    from mlops_ci.targets.docker import DockerTarget
    from tests.support.serve_helpers import free_port

    client, why = engine()
    if client is None:
        sys.exit(f"no Docker engine: {why}")
    port = free_port()
    rollout = "{steps: [10, 50, 100], window_seconds: 2, probe_requests: 20, min_requests: 10}"
    with tempfile.TemporaryDirectory(prefix="docker-deploy-") as tmp:
        project = copy_example(Path(tmp) / "iris")
        cfg = project / "mlops.yaml"
        cfg.write_text(
            cfg.read_text().replace(
                '"ghcr.io/acme/{name}:{version}"', '"mlops-ci-bench/{name}:{version}"'
            )
            + "  profile: {single_row_runs: 20, batch_sizes: [1]}\n"
            + f"deploy:\n  bench: {{target: docker, port: {port}, rollout: {rollout}}}\n"
        )
        config = load_config(project)
        reg = MlflowRegistry.for_config(config)
        versions = []
        for c in (1.0, 0.5):
            run = train(config, reg, overrides={"C": c})
            compare(config, reg, run.run_id)
            versions.append(register(config, reg, run.run_id, force=True).version)
            package(config, reg, versions[-1], build=True)
        v1, v2 = versions
        target = DockerTarget(config.model.name, config.deploy["bench"], client)
        direct = None
        try:
            deploy(config, reg, v1, "bench", "bench", {})
            stop, results = threading.Event(), Counter[str]()
            threads = [
                threading.Thread(target=hammer, args=(target.url, stop, results))
                for _ in range(args.clients)
            ]
            for thread in threads:
                thread.start()
            time.sleep(1)
            started = time.perf_counter()
            second = deploy(config, reg, v2, "bench", "bench", {})
            deploy_s = time.perf_counter() - started
            time.sleep(1)
            stop.set()
            for thread in threads:
                thread.join(30)
            failed = sum(n for k, n in results.items() if not k.startswith("v"))
            print(f"deploy v{v1} -> v{v2} ({second.status}, steps "
                  f"{', '.join(f'{s.percent:g}%' for s in second.steps)}) in {deploy_s:.1f} s "
                  f"under {args.clients} clients")  # fmt: skip
            print(f"  requests answered: {dict(results)}")
            print(f"  failed requests:   {failed}  (target 0)")

            direct_port = free_port()
            image = f"mlops-ci-bench/{config.model.name}:{v2}"
            direct = client.containers.run(
                image, detach=True, ports={"8080/tcp": ("127.0.0.1", direct_port)}
            )
            direct_url = f"http://127.0.0.1:{direct_port}"
            deadline = time.monotonic() + 60
            while True:
                try:
                    if httpx.get(f"{direct_url}/v2/health/ready", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    sys.exit("the direct container did not become ready")
                time.sleep(0.1)
            wrk_path()  # before the rounds, so a missing wrk says so at once
            front_vs_direct(target.url, direct_url, args.seconds, args.rounds)
        finally:
            if direct is not None:
                direct.remove(force=True)
            undeploy(config, reg, "bench", "bench", "benchmark over", {})
            for version in versions:
                client.images.remove(f"mlops-ci-bench/{config.model.name}:{version}", force=True)


if __name__ == "__main__":
    main()
