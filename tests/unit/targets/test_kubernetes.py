"""The kubernetes target: manifests valid against Kubernetes' own schemas, a dry run with a
kubeconfig that names no reachable cluster."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from mlops_ci.config.types import Config
from mlops_ci.steps.approve import approve
from mlops_ci.steps.deploy import deploy
from mlops_ci.targets import kubernetes as k8s
from tests.support.deployments import env_of, fake_kubeconfig, packaged_registry

K8S_VERSION = kubernetes_validate.utils.latest_version()


@pytest.mark.parametrize("serving", ["deployment", "kserve"])
def test_kubernetes_manifests_validate_against_the_schemas(config: Config, serving: str) -> None:
    env = env_of(
        config,
        kubernetes=dataclasses.replace(config.deploy["production"].kubernetes, serving=serving),
    )
    reg = packaged_registry(config)
    releases = [
        k8s.release_for(config, reg.get_version(config.model.name, "1"), 90.0),
        k8s.release_for(config, reg.get_version(config.model.name, "2"), 10.0),
    ]
    docs = k8s.render(config.model.name, env, releases)
    if serving == "deployment":
        assert [d["kind"] for d in docs] == [
            "Service",
            "Deployment",
            "HorizontalPodAutoscaler",
            "Deployment",
            "HorizontalPodAutoscaler",
        ]
        for doc in docs:
            kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
        replicas = [d["spec"]["replicas"] for d in docs if d["kind"] == "Deployment"]
        assert replicas == [2, 1]  # 90 % and 10 % of 2 replicas, at least one each
        container = docs[1]["spec"]["template"]["spec"]["containers"][0]
        assert container["image"] == "ghcr.io/acme/iris-classifier:1"
        assert container["resources"]["requests"] == {"cpu": "100m", "memory": "128Mi"}
        assert container["securityContext"]["runAsNonRoot"] is True
    else:
        (isvc,) = docs
        assert isvc["apiVersion"] == "serving.kserve.io/v1beta1"
        predictor = isvc["spec"]["predictor"]
        assert predictor["canaryTrafficPercent"] == 10
        assert predictor["containers"][0]["image"] == "ghcr.io/acme/iris-classifier:2"
        # KServe's predictor embeds Kubernetes' PodSpec: its containers are core/v1 Containers.
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "check", "namespace": "default"},
            "spec": {"containers": predictor["containers"]},
        }
        kubernetes_validate.validate(pod, K8S_VERSION, strict=True)
        assert isinstance(predictor["minReplicas"], int) and isinstance(
            predictor["maxReplicas"], int
        )


@pytest.mark.parametrize("serving", ["deployment", "kserve"])
def test_a_gpu_image_asks_for_a_gpu_and_a_cpu_image_does_not(config: Config, serving: str) -> None:
    """package.accelerator: cuda is tagged on the version; its pods ask for nvidia.com/gpu."""
    env = env_of(
        config,
        kubernetes=dataclasses.replace(config.deploy["production"].kubernetes, serving=serving),
    )
    reg = packaged_registry(config)
    reg.set_version_tags(config.model.name, "2", {"mlops.package.accelerator": "cuda"})
    cpu = k8s.release_for(config, reg.get_version(config.model.name, "1"), 90.0)
    gpu = k8s.release_for(config, reg.get_version(config.model.name, "2"), 10.0)
    assert (cpu.gpus, gpu.gpus) == (0, 1)
    docs = k8s.render(config.model.name, env, [cpu, gpu])
    if serving == "deployment":
        containers = [
            d["spec"]["template"]["spec"]["containers"][0]
            for d in docs
            if d["kind"] == "Deployment"
        ]
    else:
        containers = docs[0]["spec"]["predictor"]["containers"]
    for c in containers:
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "p"},
            "spec": {"containers": [c]},
        }
        kubernetes_validate.validate(pod, K8S_VERSION, strict=True)
    asks = [c["resources"]["limits"].get("nvidia.com/gpu") for c in containers]
    assert asks == ([None, "1"] if serving == "deployment" else ["1"])  # KServe: the newest
    assert all(
        c["resources"]["requests"].get("nvidia.com/gpu")
        == c["resources"]["limits"].get("nvidia.com/gpu")
        for c in containers
    )


def test_kubernetes_deploy_with_a_fake_kubeconfig_shows_what_would_be_applied(
    config: Config, tmp_path: Path
) -> None:
    text = config.path.read_text() + (
        "deploy:\n  production: {target: kubernetes, kubernetes: {namespace: ml}}\n"
    )
    config.path.write_text(text)
    from mlops_ci.config.types import load_config

    config = load_config(config.path)
    reg = packaged_registry(config)
    reg.set_alias(config.model.name, "production", "1")
    approve(config, reg, "2", "production", "alice", "ok")
    kubeconfig = fake_kubeconfig(tmp_path)
    result = deploy(
        config, reg, "2", "production", "ci", {"KUBECONFIG": str(kubeconfig)}, dry_run=True
    )
    assert result.status == "written" and result.split == {"1": 90.0, "2": 10.0}
    assert result.plan[0] == (
        "apply Service/iris-classifier in namespace ml to context ml-prod "
        "(cluster prod at https://10.0.0.1:6443)"
    )
    assert len(result.plan) == 5
    written = list(yaml.safe_load_all(Path(result.manifests or "").read_text()))
    assert [d["metadata"]["name"] for d in written if d["kind"] == "Deployment"] == [
        "iris-classifier-v1",
        "iris-classifier-v2",
    ]
    assert reg.get_version_by_alias(config.model.name, "production").version == "1"  # type: ignore[union-attr]
    assert (
        reg.get_version(config.model.name, "2").tags["mlops.deploy.production.status"] == "written"
    )
