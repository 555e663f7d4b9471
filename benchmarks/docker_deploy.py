"""A docker deployment under load: failed requests while the version changes, and what the
front costs over a bare HAProxy hop and against the same image answering directly, in one run.

Packages two versions of the iris example (images built on the engine that DOCKER_HOST names;
eval "$(../shared/tools/container-engine.sh)" starts one), deploys v1 to a docker environment,
then deploys v2 through canary steps while client threads score single rows, and prints the
requests answered per version and the ones that failed. Then it measures single-row /score
three ways, alternated for --rounds rounds with wrk (Debian's package) pinned to CPU 0 at 1 and
8 connections: straight to a container of the same image with its port published ("direct"),
through a bare HAProxy ("haproxy": a container of the same image running HAProxy with one
server and nothing else, on the front's two networks, publishing its port the same way) to the
version's own container, and through the front to it; it prints each row's median req/s and p99
and their ratios to the bare HAProxy.

Targets: 0 failed requests during a docker deploy under load (issue 15); the front at >= 0.95x
the bare HAProxy's req/s and p99 <= 1.1x its p99 at 1 and 8 connections (issue 42: the hop
itself is the bound; the front against the version direct is printed beside it).

Needs the test extra (pip install -e '.[test]': httpx, and tests/support/ from this checkout).

Run: python benchmarks/docker_deploy.py [--clients 4] [--seconds 4] [--rounds 5]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
from _wrk import wrk_path
from front_proxies import HAPROXY, hop_rows, ready

ROOT = Path(__file__).resolve().parents[1]
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


def bare_haproxy(client: Any, target: Any, image: str, version: str, port: int) -> Any:
    """A container of ``image`` running HAProxy with one server, ``version``'s container, and
    nothing else: started on the front's edge network publishing ``port`` as the front does,
    then joined to the versions' network, as the front is."""
    from mlops_ci.targets.docker import CONTAINER_PORT, edge_name

    network = client.networks.get(target.base)
    version_container = client.containers.get(f"{target.base}-v{version}")
    address = version_container.attrs["NetworkSettings"]["Networks"][target.base]["IPAddress"]
    config = HAPROXY.format(listen=f"*:{CONTAINER_PORT}", upstream=f"{address}:{CONTAINER_PORT}")
    container = client.containers.run(
        image,
        [
            "sh",
            "-c",
            'printf "%s" "$CFG" > /tmp/haproxy.cfg && exec haproxy -db -f /tmp/haproxy.cfg',
        ],
        detach=True,
        environment={"CFG": config},
        network=edge_name(target.model, target.env),
        ports={f"{CONTAINER_PORT}/tcp": ("127.0.0.1", port)},
    )
    network.connect(container)
    return container


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=4.0, help="of each wrk round")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    wrk_path()  # before anything is built, so a missing wrk says so at once
    sys.path.insert(0, str(ROOT))

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
        extra: list[Any] = []
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

            image = f"mlops-ci-bench/{config.model.name}:{v2}"
            direct_port, bare_port = free_port(), free_port()
            extra.append(
                client.containers.run(
                    image, detach=True, ports={"8080/tcp": ("127.0.0.1", direct_port)}
                )
            )
            extra.append(bare_haproxy(client, target, image, v2, bare_port))
            urls = {
                "direct": f"http://127.0.0.1:{direct_port}",
                "haproxy": f"http://127.0.0.1:{bare_port}",
                "front": target.url,
            }
            for url in urls.values():
                ready(url)
            print(f"single-row /score, wrk on CPU 0, medians of {args.rounds} alternated "
                  f"rounds of {args.seconds:g} s")  # fmt: skip
            hop_rows(urls, args.rounds, args.seconds, taskset="0")
        finally:
            for container in extra:
                container.remove(force=True)
            undeploy(config, reg, "bench", "bench", "benchmark over", {})
            for version in versions:
                client.images.remove(f"mlops-ci-bench/{config.model.name}:{version}", force=True)


if __name__ == "__main__":
    main()
