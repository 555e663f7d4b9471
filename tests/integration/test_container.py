"""The serving image on a real engine (podman's Docker API here, `.ci/run` starts it with
shared/tools/container-engine.sh): built by `package` from the build context alone, ready over
HTTP, answering as `mlops-ci serve` does, and refusing a tampered model. Skipped, with the
reason, where no engine answers."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from mlops_ci.config import load_config
from mlops_ci.packaging import image
from mlops_ci.registry.mlflow import MlflowRegistry
from mlops_ci.steps.compare import compare
from mlops_ci.steps.package import package
from mlops_ci.steps.pipeline import copy_example
from mlops_ci.steps.register import register
from mlops_ci.steps.train import train
from tests.serve_helpers import free_port, serving

pytestmark = [pytest.mark.slow, pytest.mark.docker]
FAST_PROFILE = "  profile: {single_row_runs: 20, batch_sizes: [1, 64]}\n"


@pytest.fixture
def client() -> Any:
    found, why = image.engine()
    if found is None:
        pytest.skip(f"no Docker engine here: {why}")
    return found


def packaged(tmp_path: Path, example: str, tag: str) -> tuple[Path, Any]:
    project = copy_example(tmp_path / example, example)
    config_file = project / "mlops.yaml"
    config_file.write_text(config_file.read_text() + f"package:\n  image: '{tag}'\n" + FAST_PROFILE)
    config = load_config(project)
    reg = MlflowRegistry.for_config(config)
    run = train(config, reg)
    compare(config, reg, run.run_id)
    result = package(config, reg, register(config, reg, run.run_id).version, build=True)
    assert result.image.status == "built", result.image
    return Path(result.context), config


@contextmanager
def running(client: Any, tag: str, timeout: float = 30) -> Iterator[str]:
    """The image as a container with its port on 127.0.0.1; yields its URL once ready."""
    port = free_port()
    container = client.containers.run(
        tag, detach=True, ports={"8080/tcp": ("127.0.0.1", port)}, remove=False
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                urllib.request.urlopen(f"{url}/v2/health/ready", timeout=1)
                break
            except (urllib.error.URLError, ConnectionError, OSError):
                container.reload()
                if container.status == "exited" or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"container {container.status}: {container.logs().decode()[-2000:]}"
                    ) from None
                time.sleep(0.1)
        yield url
    finally:
        container.remove(force=True)


def post(url: str, body: dict[str, Any]) -> Any:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"content-type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        return json.loads(answer.read())


@pytest.mark.parametrize("example", ["iris", "breast-cancer"])
def test_the_image_builds_from_its_context_and_answers_as_serve_does(
    client: Any, tmp_path: Path, example: str
) -> None:
    tag = f"mlops-ci-test/{example}:{tmp_path.name.lower()[-12:]}"
    context, config = packaged(tmp_path, example, tag)
    try:
        requirements = (context / "requirements.txt").read_text()
        assert "mlops-ci" not in requirements and "mlflow" not in requirements
        assert "scikit-learn" not in requirements and "onnxruntime==" in requirements
        labels = client.images.get(tag).labels
        assert labels["io.mlops-ci.model.name"] == config.model.name
        data = pd.read_csv(config.resolve(config.evaluate.data))
        rows = data.drop(columns=[config.evaluate.target]).head(5)
        inputs = [
            {
                "name": c,
                "shape": [5, 1],
                "datatype": "FP32" if rows[c].dtype.kind in "biuf" else "BYTES",
                "data": rows[c].tolist(),
            }
            for c in rows.columns
        ]
        infer = f"/v2/models/{config.model.name}/infer"
        with (
            running(client, tag) as url,
            serving("--model-dir", str(context), cwd=config.root) as srv,
        ):
            from_image = post(url + infer, {"inputs": inputs})
            from_serve = post(srv.url + infer, {"inputs": inputs})
            assert from_image["outputs"] == from_serve["outputs"]
            score = post(url + "/score", {"inputs": rows.to_dict("records")})
            (label,) = [o for o in from_serve["outputs"] if o["name"] == "label"]
            assert score["predictions"] == label["data"] and len(label["data"]) == 5
    finally:
        client.images.remove(tag, force=True)


def test_an_image_with_a_tampered_model_never_becomes_ready(client: Any, tmp_path: Path) -> None:
    tag = f"mlops-ci-test/iris-tampered:{tmp_path.name.lower()[-12:]}"
    context, _ = packaged(tmp_path, "iris", tag)
    model = context / "model" / "model.onnx"
    model.write_bytes(model.read_bytes() + b"\0")
    assert image.build_image(context, tag, push=False).status == "built"
    try:
        with pytest.raises(RuntimeError, match="container exited: .*sha256"), running(client, tag):
            pass
    finally:
        client.images.remove(tag, force=True)


def test_docker_target_waits_for_readiness_and_keeps_the_old_container_on_a_broken_image(
    client: Any, tmp_path: Path
) -> None:
    from mlops_ci.errors import ServiceError
    from mlops_ci.targets.docker import deploy_container

    good = f"mlops-ci-test/iris-good:{tmp_path.name.lower()[-12:]}"
    broken = f"mlops-ci-test/iris-broken:{tmp_path.name.lower()[-12:]}"
    context, config = packaged(tmp_path, "iris", good)
    model = context / "model" / "model.onnx"
    model.write_bytes(model.read_bytes() + b"\0")
    assert image.build_image(context, broken, push=False).status == "built"
    port = free_port()
    name = f"test{port}"  # an environment of its own: the cleanup touches nothing else
    config.path.write_text(
        config.path.read_text() + f"deploy:\n  {name}: {{target: docker, port: {port}}}\n"
    )
    env = load_config(config.root).deploy[name]
    row = {"inputs": [[5.1, 3.5, 1.4, 0.2]]}
    try:
        done = deploy_container(config.model.name, "1", good, env)
        assert done.status == "running"
        assert post(f"http://127.0.0.1:{port}/score", row)["model_version"] == "1"
        with pytest.raises(ServiceError, match="did not become healthy; the previous one is back"):
            deploy_container(config.model.name, "2", broken, env)
        assert post(f"http://127.0.0.1:{port}/score", row)["model_version"] == "1"
        names = [c.name for c in client.containers.list(all=True)]
        assert not any(n.endswith("-v2") for n in names)
    finally:
        for container in client.containers.list(
            all=True, filters={"label": f"io.mlops-ci.environment={env.name}"}
        ):
            container.remove(force=True)
        for tag in (good, broken):
            client.images.remove(tag, force=True)
