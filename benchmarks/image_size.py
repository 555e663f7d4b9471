"""The serving image against a bare FastAPI + uvicorn + onnxruntime + numpy image, in one run.

Packages the iris example (train, register, `package` with an image build) on the engine that
DOCKER_HOST names (eval "$(../shared/tools/container-engine.sh)" starts one), builds the bare
reference on the same base image, and prints both sizes and their ratio, the build time of the
example image, and how long its container takes to answer /v2/health/ready.

Targets (issue 15): serving image <= 1.15x the bare one; build <= 60 s from a warm engine;
ready <= 3 s after start.

Run: python benchmarks/image_size.py
"""

from __future__ import annotations

import sys
import tempfile
import time
import urllib.request
from pathlib import Path

BARE = """\
FROM {base}
RUN pip install --no-cache-dir fastapi uvicorn onnxruntime numpy
"""


def main() -> None:
    from mlops_ci.config.types import load_config
    from mlops_ci.packaging.image import engine
    from mlops_ci.registry.mlflow import MlflowRegistry
    from mlops_ci.steps.compare import compare
    from mlops_ci.steps.demo import copy_example
    from mlops_ci.steps.package import package
    from mlops_ci.steps.register import register
    from mlops_ci.steps.train import train

    client, why = engine()
    if client is None:
        sys.exit(f"no Docker engine: {why}")
    with tempfile.TemporaryDirectory(prefix="image-size-") as tmp:
        work = Path(tmp)
        project = copy_example(work / "iris")
        cfg = project / "mlops.yaml"
        cfg.write_text(
            cfg.read_text().replace('"ghcr.io/acme/{name}:{version}"', '"mlops-ci-bench/{name}:1"')
            + "  profile: {single_row_runs: 20, batch_sizes: [1]}\n"
        )
        config = load_config(project)
        reg = MlflowRegistry.for_config(config)
        run = train(config, reg)
        compare(config, reg, run.run_id)
        version = register(config, reg, run.run_id).version
        started = time.perf_counter()
        result = package(config, reg, version, build=True)
        build_s = time.perf_counter() - started
        served = client.images.get(result.image.tag)

        bare_dir = work / "bare"
        bare_dir.mkdir()
        (bare_dir / "Dockerfile").write_text(BARE.format(base=config.package.base_image))
        bare, _ = client.images.build(path=str(bare_dir), tag="mlops-ci-bench/bare:1", rm=True)

        container = client.containers.run(
            result.image.tag, detach=True, ports={"8080/tcp": ("127.0.0.1", 18099)}
        )
        started = time.perf_counter()
        try:
            while True:
                try:
                    urllib.request.urlopen("http://127.0.0.1:18099/v2/health/ready", timeout=1)
                    break
                except OSError:
                    if time.perf_counter() - started > 60:
                        raise
                    time.sleep(0.05)
            ready_s = time.perf_counter() - started
        finally:
            container.remove(force=True)
        size, bare_size = served.attrs["Size"] / 1e6, bare.attrs["Size"] / 1e6
        print(f"serving image {result.image.tag}: {size:,.0f} MB")
        print(f"bare FastAPI + uvicorn + onnxruntime + numpy: {bare_size:,.0f} MB")
        print(f"ratio {size / bare_size:.2f}x (target <= 1.15x)")
        print(f"package with image build: {build_s:.1f} s (target <= 60 s, profile included)")
        print(f"container ready after {ready_s:.2f} s (target <= 3 s)")
        for tag in (result.image.tag, "mlops-ci-bench/bare:1"):
            client.images.remove(tag, force=True)


if __name__ == "__main__":
    main()
