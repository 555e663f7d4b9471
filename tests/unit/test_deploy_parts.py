"""The deploy parts without a server: rollout health, gates, kubernetes manifests, docker spec."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from mlops_ci.config.types import Config, DeployEnv
from mlops_ci.errors import GateFailed
from mlops_ci.registry import VersionRecord
from mlops_ci.steps.approve import approve
from mlops_ci.steps.deploy import deploy
from mlops_ci.steps.gates import check_gates, comparison_gate
from mlops_ci.targets import kubernetes as k8s
from mlops_ci.targets import rollout
from mlops_ci.targets.docker import front_spec, run_spec
from tests.support.fakes import InMemoryRegistry

K8S_VERSION = kubernetes_validate.utils.latest_version()

METRICS_BEFORE = """
mlops_requests_total{code="200",endpoint="score",model="m",version="1"} 100.0
mlops_requests_total{code="200",endpoint="score",model="m",version="2"} 5.0
mlops_request_duration_seconds_bucket{endpoint="score",le="0.001",model="m",version="1"} 90.0
mlops_request_duration_seconds_bucket{endpoint="score",le="0.002",model="m",version="1"} 100.0
mlops_request_duration_seconds_bucket{endpoint="score",le="+Inf",model="m",version="1"} 100.0
mlops_request_duration_seconds_bucket{endpoint="score",le="0.001",model="m",version="2"} 5.0
mlops_request_duration_seconds_bucket{endpoint="score",le="0.002",model="m",version="2"} 5.0
mlops_request_duration_seconds_bucket{endpoint="score",le="+Inf",model="m",version="2"} 5.0
"""
METRICS_AFTER = """
mlops_requests_total{code="200",endpoint="score",model="m",version="1"} 200.0
mlops_requests_total{code="200",endpoint="score",model="m",version="2"} 45.0
mlops_requests_total{code="500",endpoint="score",model="m",version="2"} 5.0
mlops_request_duration_seconds_bucket{endpoint="score",le="0.001",model="m",version="1"} 190.0
mlops_request_duration_seconds_bucket{endpoint="score",le="0.002",model="m",version="1"} 200.0
mlops_request_duration_seconds_bucket{endpoint="score",le="+Inf",model="m",version="1"} 200.0
mlops_request_duration_seconds_bucket{endpoint="score",le="0.001",model="m",version="2"} 5.0
mlops_request_duration_seconds_bucket{endpoint="score",le="0.002",model="m",version="2"} 25.0
mlops_request_duration_seconds_bucket{endpoint="score",le="+Inf",model="m",version="2"} 45.0
"""


def env_of(config: Config, name: str = "production", **changes: Any) -> DeployEnv:
    return dataclasses.replace(config.deploy[name], **changes)


def test_window_counts_requests_5xx_and_p99_between_scrapes(config: Config) -> None:
    before, after = rollout.parse_metrics(METRICS_BEFORE), rollout.parse_metrics(METRICS_AFTER)
    new = rollout.window("2", before, after)
    current = rollout.window("1", before, after)
    assert (new.requests, new.server_errors) == (45, 5) and new.error_rate == pytest.approx(5 / 45)
    assert new.p99_ms == float("inf")  # 20 of 40 histogram entries slower than 2 ms
    assert (current.requests, current.server_errors, current.p99_ms) == (100, 0, 1.0)
    health = rollout.judge(new, current, config.deploy["production"].rollout)
    assert not health.passed and health.judged
    assert any("5xx rate 11.1% > 1.0%" in r for r in health.reasons)
    assert any("p99 inf ms > 25 ms" in r for r in health.reasons)


def test_judge_needs_enough_requests_and_tolerates_small_latencies(config: Config) -> None:
    rules = config.deploy["production"].rollout
    few = rollout.VersionWindow("2", 3, 0, 1.0)
    assert not rollout.judge(few, None, rules).judged
    fine = rollout.VersionWindow("2", 50, 0, 5.0)
    slow_but_small = rollout.judge(fine, rollout.VersionWindow("1", 50, 0, 0.5), rules)
    assert slow_but_small.passed, "10x of 0.5 ms is still under max_p99_ms"
    slow = rollout.VersionWindow("2", 50, 0, 100.0)
    assert not rollout.judge(slow, rollout.VersionWindow("1", 50, 0, 10.0), rules).passed
    assert rollout.judge(slow, rollout.VersionWindow("1", 50, 0, 50.0), rules).passed


def version(number: str = "2", **tags: str) -> VersionRecord:
    return VersionRecord("iris-classifier", number, "run1", "", dict(tags))


def test_gates_name_what_is_missing(config: Config) -> None:
    assert not comparison_gate(version()).passed
    assert comparison_gate(version(**{"mlops.compare.verdict": "pass"})).passed
    gates, approval = check_gates(version(), config.deploy["production"], {})
    assert [(g.name, g.passed) for g in gates] == [("comparison", False), ("approval", False)]
    assert approval is None and "mlops-ci approve --version 2 --env production" in gates[1].detail
    staging, _ = check_gates(
        version(**{"mlops.compare.verdict": "fail"}), config.deploy["staging"], {}
    )
    assert [g.name for g in staging] == ["comparison"] and not staging[0].passed


def packaged_registry(config: Config, versions: int = 2) -> InMemoryRegistry:
    from sklearn.dummy import DummyClassifier

    reg = InMemoryRegistry()
    for _ in range(versions):
        run = reg.add_run(DummyClassifier())
        reg.create_version(
            config.model.name,
            run,
            {
                "mlops.compare.verdict": "pass",
                "mlops.package.complete": "true",
                "mlops.package.sha256": "ab" * 32,
                "mlops.package.recommended.cpu": "100m",
                "mlops.package.recommended.memory": "128Mi",
            },
            "",
        )
    return reg


def test_production_without_approval_is_refused_then_approved(config: Config) -> None:
    reg = packaged_registry(config)
    with pytest.raises(GateFailed, match="gate approval"):
        deploy(config, reg, "1", "production", "ci", {})
    approve(config, reg, "1", "production", "alice", "change 42")
    tags = reg.get_version(config.model.name, "1").tags
    assert tags["mlops.approval.production.by"] == "alice"
    assert tags["mlops.approval.production.reason"] == "change 42"
    gates, approval = check_gates(reg.get_version(config.model.name, "1"), env_of(config), {})
    assert [(g.name, g.passed) for g in gates] == [("comparison", True), ("approval", True)]
    assert approval is not None and (approval.by, approval.source) == ("alice", "mlops-ci approve")
    staging = check_gates(reg.get_version(config.model.name, "1"), env_of(config, "staging"), {})
    assert staging[1] is None  # an approval for production is not one for staging


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


def fake_kubeconfig(folder: Path) -> Path:
    """A kubeconfig naming a cluster that is not there (nothing here talks to it)."""
    kubeconfig = folder / "kubeconfig"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "current-context": "ml-prod",
                "contexts": [{"name": "ml-prod", "context": {"cluster": "prod", "user": "ci"}}],
                "clusters": [{"name": "prod", "cluster": {"server": "https://10.0.0.1:6443"}}],
                "users": [{"name": "ci", "user": {"token": "not-a-real-token"}}],
            }
        )
    )
    return kubeconfig


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


def test_docker_specs_publish_only_the_front_and_keep_the_restart_policy(config: Config) -> None:
    env = env_of(config, restart_policy="on-failure", port=9000)
    spec = run_spec("iris-classifier", "3", "ghcr.io/acme/iris-classifier:3", env)
    assert "ports" not in spec and spec["network"] == "mlops-ci-iris-classifier-production"
    assert spec["name"] == "mlops-ci-iris-classifier-production-v3"
    assert spec["restart_policy"] == {"Name": "on-failure", "MaximumRetryCount": 5}
    assert spec["labels"]["io.mlops-ci.environment"] == "production" and spec["read_only"]
    assert spec["labels"]["io.mlops-ci.role"] == "version"
    front = front_spec("iris-classifier", "ghcr.io/acme/iris-classifier:3", env, "t0ken")
    assert front["ports"] == {"8080/tcp": ("127.0.0.1", 9000)}
    assert front["command"][:2] == ["mlops-ci", "front"] and front["environment"]
    assert front["labels"]["io.mlops-ci.role"] == "front" and front["read_only"]


class FakeDynamicClient:
    """The part of kubernetes.dynamic.DynamicClient undeploy uses; no cluster runs here."""

    def __init__(self, gone: set[str]) -> None:
        self.deleted: list[tuple[str, str, str | None]] = []
        self.gone = gone
        self.resources = self

    def get(self, api_version: str, kind: str) -> Any:
        client = self

        class Resource:
            def delete(self, name: str, namespace: str | None) -> None:
                if name in client.gone:
                    error = RuntimeError(f"{kind} {name} not found")
                    error.status = 404  # type: ignore[attr-defined]
                    raise error
                client.deleted.append((kind, name, namespace))

        return Resource()


@pytest.mark.kubernetes_mock
def test_undeploy_deletes_what_kubernetes_deploy_wrote_and_records_who_and_why(
    config: Config, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlops_ci.config.types import load_config
    from mlops_ci.steps.undeploy import undeploy

    config.path.write_text(
        config.path.read_text()
        + "deploy:\n  production: {target: kubernetes, kubernetes: {namespace: ml}}\n"
    )
    config = load_config(config.path)
    reg = packaged_registry(config)
    approve(config, reg, "1", "production", "alice", "ok")
    kubeconfig = fake_kubeconfig(tmp_path)
    written = deploy(
        config, reg, "1", "production", "ci", {"KUBECONFIG": str(kubeconfig)}, dry_run=True
    )
    reg.set_alias(config.model.name, "production", "1")
    reg.set_version_tags(config.model.name, "1", {"mlops.deploy.production.status": "applied"})
    docs = k8s.read(Path(written.manifests or ""))

    without = undeploy(config, reg, "production", "bob", "decommissioned", {"KUBECONFIG": "/x"})
    assert without.status == "written" and "kubectl delete -f" in (without.note or "")
    assert reg.get_version(config.model.name, "1").tags["mlops.deploy.production.status"] == (
        "applied"
    )  # nothing was deleted, so nothing is recorded

    fake = FakeDynamicClient(gone={docs[0]["metadata"]["name"]})
    monkeypatch.setattr(k8s, "_dynamic_client", lambda _path: fake)
    result = undeploy(
        config, reg, "production", "bob", "decommissioned", {"KUBECONFIG": str(kubeconfig)}
    )
    assert result.status == "undeployed" and result.versions == ["1"] and result.tagged == ["1"]
    expected = [(d["kind"], d["metadata"]["name"], "ml") for d in reversed(docs[1:])]
    assert fake.deleted == expected  # reverse order; the object already gone is skipped
    assert result.stopped == [f"deleted {kind}/{name}" for kind, name, _ in expected]
    tags = reg.get_version(config.model.name, "1").tags
    assert tags["mlops.deploy.production.status"] == "undeployed"
    assert tags["mlops.deploy.production.undeployed.by"] == "bob"
    assert tags["mlops.deploy.production.undeployed.reason"] == "decommissioned"
    assert reg.get_version_by_alias(config.model.name, "production").version == "1"  # type: ignore[union-attr]
    audit = (config.root / ".mlops" / "deploy-audit.jsonl").read_text().splitlines()
    assert '"action": "undeploy"' in audit[-1] and '"by": "bob"' in audit[-1]


def test_undeploy_of_an_unknown_environment_is_one_line_and_exit_2(
    config: Config, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.support.helpers import run_cli

    code = run_cli("undeploy", "-c", str(config.path), "--env", "nowhere", "--reason", "x")
    err = capsys.readouterr().err
    assert code == 2 and "deploy.nowhere: no such environment" in err
    assert "Traceback" not in err


def test_a_busy_port_is_named_not_left_to_uvicorn(config: Config) -> None:
    import socket

    from mlops_ci.errors import ServiceError
    from mlops_ci.targets.local import LocalTarget

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        env = env_of(config, "staging", port=port, host="127.0.0.1")
        with pytest.raises(ServiceError, match=f"port {port} on 127.0.0.1 is in use"):
            LocalTarget(config, env).start("1", config.root)
