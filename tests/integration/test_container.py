"""The serving image on a real engine (podman's Docker API here, `.ci/run` starts it with
shared/tools/container-engine.sh): built by `package` from the build context alone, ready over
HTTP, answering as `mlops-ci serve` does, and refusing a tampered model. Skipped, with the
reason, where no engine answers."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest

from mlops_ci.config.types import load_config
from mlops_ci.errors import ServiceError
from mlops_ci.packaging import image
from mlops_ci.registry.mlflow import MlflowRegistry
from mlops_ci.steps.compare import compare
from mlops_ci.steps.deploy import deploy
from mlops_ci.steps.package import package
from mlops_ci.steps.register import register
from mlops_ci.steps.rollback import rollback
from mlops_ci.steps.status import status
from mlops_ci.steps.train import train
from mlops_ci.steps.undeploy import undeploy
from mlops_ci.targets.docker import DockerTarget
from tests.support.serve_helpers import free_port, serving
from tests.support.store import copy_example, with_package

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
    config_file.write_text(
        with_package(config_file.read_text(), f"  image: '{tag}'\n" + FAST_PROFILE)
    )
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
        built = client.images.get(tag)
        labels = built.labels
        assert labels["io.mlops-ci.model.name"] == config.model.name
        manifest = (context / "model" / "manifest.json").read_bytes()
        assert labels["io.mlops-ci.model.sha256"] == json.loads(manifest)["sha256"]
        assert labels["io.mlops-ci.model.version"] == json.loads(manifest)["version"]
        image_config = built.attrs["Config"]
        assert image_config["User"] == "10001", "serves as a non-root user"
        assert list(image_config["ExposedPorts"]) == [f"{config.package.port}/tcp"]
        assert image_config["Cmd"][:2] == ["mlops-ci", "serve"]
        # (HEALTHCHECK is in the Dockerfile; podman's Docker-compatible inspect omits it)
        # the packaged files, byte for byte: the manifest the container checks at start
        cat = client.containers.run(tag, ["cat", "/opt/model/manifest.json"], remove=True)
        assert cat == manifest
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


class Load:
    """Single-row /score requests from ``clients`` threads until stopped: (status, version)."""

    def __init__(self, url: str, clients: int = 3) -> None:
        self.url, self.results = url, Counter[tuple[int, str]]()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(clients)]
        self.timeline: list[tuple[float, str]] = []  # (when the request was sent, version)

    def _run(self) -> None:
        deadline = time.monotonic() + 240
        with httpx.Client(base_url=self.url, timeout=10) as http:
            while not self._stop.is_set() and time.monotonic() < deadline:
                sent = time.monotonic()
                try:
                    answer = http.post("/score", json={"inputs": [[5.1, 3.5, 1.4, 0.2]]})
                    version = answer.json().get("model_version", "-")
                    self.results[(answer.status_code, version)] += 1
                    self.timeline.append((sent, version))
                except httpx.HTTPError as err:
                    self.results[(0, type(err).__name__)] += 1
                    self.timeline.append(
                        (sent, f"{type(err).__name__} after {time.monotonic() - sent:.1f}s")
                    )
                time.sleep(0.005)

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(30)

    def sent_after(self, since: float, count: int = 20, timeout: float = 30) -> set[str]:
        """The versions that answered the requests sent after ``since`` (waits for ``count``
        of them: on a loaded CI machine the clients may lag, which is not a routing fault)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            answered = [
                v for (sent, v) in list(self.timeline) if sent >= since and not v.startswith("==")
            ]
            if len(answered) >= count:
                return set(answered)
            time.sleep(0.05)
        raise AssertionError(f"only {len(answered)} requests answered in {timeout}s")

    def mark(self, phase: str) -> None:
        self.timeline.append((time.monotonic(), f"== {phase}"))

    def around_failures(self) -> list[str]:
        """The phase marks and the failed requests, in the order they were sent."""
        start = self.timeline[0][0] if self.timeline else 0.0
        return [
            f"{t - start:.2f} {what}"
            for t, what in sorted(self.timeline)
            if what.startswith("==") or " after " in what
        ]

    def failed(self) -> dict[tuple[int, str], int]:
        return {k: n for k, n in self.results.items() if k[0] != 200}


def test_docker_deploys_under_load_fail_no_request_and_a_broken_image_never_takes_traffic(
    client: Any, tmp_path: Path
) -> None:
    """deploy to a docker environment: v1 first, then v2 through canary steps while clients
    score, then an image whose model was tampered (it never becomes ready), then rollback —
    and not one request fails."""
    port = free_port()
    env = f"t{port}"  # an environment of its own: the cleanup touches nothing else
    repo = f"mlops-ci-test/iris-{tmp_path.name.lower()[-10:]}"
    project = copy_example(tmp_path / "iris", "iris")
    rollout = "{steps: [50, 100], window_seconds: 1.5, probe_requests: 20, min_requests: 10}"
    (project / "mlops.yaml").write_text(
        with_package(
            (project / "mlops.yaml").read_text(), f"  image: '{repo}:{{version}}'\n" + FAST_PROFILE
        )
        + f"deploy:\n  {env}: {{target: docker, port: {port}, rollout: {rollout}}}\n"
    )
    config = load_config(project)
    reg = MlflowRegistry.for_config(config)
    versions, contexts = [], []
    for c in (1.0, 0.5, 0.3):
        run = train(config, reg, overrides={"C": c})
        compare(config, reg, run.run_id)
        versions.append(register(config, reg, run.run_id, force=True).version)
        contexts.append(Path(package(config, reg, versions[-1], build=c != 0.3).context))
    v1, v2, v3 = versions
    context = contexts[2]
    model = context / "model" / "model.onnx"
    model.write_bytes(model.read_bytes() + b"\0")  # tampered after packaging
    assert image.build_image(context, f"{repo}:{v3}", push=False).status == "built"
    target = DockerTarget(config.model.name, config.deploy[env], client)
    try:
        first = deploy(config, reg, v1, env, "ci-bot", {})
        assert first.status == "serving" and first.url == f"http://127.0.0.1:{port}", (
            first.note,
            first.steps,
        )
        with Load(first.url) as load:
            time.sleep(1)
            load.mark(f"deploy v{v2}")
            second = deploy(config, reg, v2, env, "ci-bot", {})
            load.mark(f"v{v2} deployed")
            assert second.status == "serving" and [s.percent for s in second.steps] == [50, 100]
            assert all(s.passed for s in second.steps), second.steps
            assert load.sent_after(time.monotonic()) == {v2}
            with pytest.raises(ServiceError, match="did not become ready"):
                load.mark(f"deploy v{v3} (tampered)")
                deploy(config, reg, v3, env, "ci-bot", {})
            load.mark(f"v{v3} refused")
            time.sleep(0.5)
            load.mark("rollback")
            back = rollback(config, reg, env, "oncall", "checking the rollback")
            load.mark("rolled back")
            assert (back.from_version, back.to_version) == (v2, v1)
            assert load.sent_after(time.monotonic()) == {v1}
        assert not load.failed(), (load.failed(), load.around_failures())
        assert {v for (_, v) in load.results} == {v1, v2} and sum(load.results.values()) > 200
        routes = target.traffic()
        assert routes["weights"] == {v1: 100.0, v2: 0.0}, routes
        (row,) = [s for s in status(config, reg) if s.env == env]
        assert row.version == v1 and row.live_split == {v1: 100.0, v2: 0.0}
        running = {c.labels.get("io.mlops-ci.model.version") for c in target.containers("version")}
        assert running == {v1, v2}  # v3's container was removed; v2 stays for a quick switch
        assert reg.get_version_by_alias(config.model.name, env).version == v1  # type: ignore[union-attr]
        assert_the_edge_is_closed(client, target, first.url)

        gone = undeploy(config, reg, env, "oncall", "the trial is over", {})
        assert gone.status == "undeployed" and gone.versions == [v1, v2] and gone.tagged == [v1]
        assert len(gone.stopped) == 3 and not target.containers()  # the front and two versions
        assert not client.networks.list(names=[target.base, f"{target.base}-edge"])
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{first.url}/v2/health/ready", timeout=2)
        tags = reg.get_version(config.model.name, v1).tags
        assert tags[f"mlops.deploy.{env}.status"] == "undeployed"
        assert tags[f"mlops.deploy.{env}.undeployed.reason"] == "the trial is over"
        assert reg.get_version_by_alias(config.model.name, env).version == v1  # type: ignore[union-attr]
    finally:
        target.stop()
        for version in versions:
            client.images.remove(f"{repo}:{version}", force=True)
    assert not target.containers()


def assert_the_edge_is_closed(client: Any, target: DockerTarget, url: str) -> None:
    """The versions' network has no route out and only the front reaches it; the front
    forwards no admin path and takes no upstream but its own version containers."""
    versions = client.networks.get(target.base)
    assert versions.attrs["Internal"] is True
    assert client.networks.get(f"{target.base}-edge").attrs["Internal"] is False
    (container, *_) = target.containers("version")
    out = container.exec_run(
        ["python", "-c", "import socket; socket.create_connection(('192.0.2.1', 80), timeout=3)"]
    )
    assert out.exit_code != 0 and b"unreachable" in out.output, out.output[-300:]
    for path in ("/admin/split", "/admin/models", "/metrics/../admin/split"):
        answer = httpx.get(f"{url}{path}", headers={"authorization": "Bearer x"}, timeout=10)
        assert answer.status_code == 404 and "error" in answer.json(), (path, answer.text)
    token = {"authorization": f"Bearer {target._token()}"}
    ssrf = {"upstreams": {"9": "http://169.254.169.254/"}, "weights": {"9": 1}}
    refused = httpx.put(f"{url}/admin/front", json=ssrf, headers=token, timeout=10)
    assert refused.status_code == 422 and "a version container here" in refused.json()["error"]
