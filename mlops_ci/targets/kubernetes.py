"""The kubernetes target: manifests for a split between versions, applied or written.

``serving: deployment`` renders a Deployment (and a HorizontalPodAutoscaler) per version that
takes traffic, all behind one Service: the split is the replica ratio. ``serving: kserve``
renders one KServe InferenceService whose ``canaryTrafficPercent`` gives the new version its
share (KServe keeps the previous revision for the rest). Resources come from the profile that
`package` recorded on each version. With a kubeconfig the manifests are applied with the
kubernetes client (server-side apply); without one they are written for `kubectl apply -f` or a
GitOps repository, and `--dry-run` only shows what would be applied where.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml

from mlops_ci.config.types import Config, DeployEnv
from mlops_ci.errors import InputError, ServiceError
from mlops_ci.extras import install_hint
from mlops_ci.packaging.image import image_tag
from mlops_ci.records import write_text_atomic
from mlops_ci.registry import VersionRecord
from mlops_ci.targets.base import Rendered, Stopped

CONTAINER_PORT = 8080
FIELD_MANAGER = "mlops-ci"


@dataclass(frozen=True)
class Release:
    """One version in the split, with what its pods need."""

    version: str
    percent: float
    image: str
    cpu: str
    memory: str
    sha256: str
    gpus: int = 0  # package.accelerator cuda: one nvidia.com/gpu per pod


def release_for(config: Config, version: VersionRecord, percent: float) -> Release:
    tags = version.tags
    image = image_tag(config, version.name, version.version)
    return Release(
        version.version,
        percent,
        image,
        tags.get("mlops.package.recommended.cpu", "250m"),
        tags.get("mlops.package.recommended.memory", "256Mi"),
        tags.get("mlops.package.sha256", ""),
        1 if tags.get("mlops.package.accelerator") == "cuda" else 0,
    )


def render(name: str, env: DeployEnv, releases: list[Release]) -> list[dict[str, Any]]:
    k = env.kubernetes
    if k.serving == "kserve":
        return [_inference_service(name, env, releases)]
    docs: list[dict[str, Any]] = [_service(name, env)]
    taking = [r for r in releases if r.percent > 0]
    for release in taking:
        replicas = max(1, round(k.replicas * release.percent / 100))
        docs.append(_deployment(name, env, release, replicas))
        docs.append(_hpa(name, env, release, replicas))
    return docs


def _labels(name: str, env: DeployEnv, version: str | None = None) -> dict[str, str]:
    labels = {
        "app.kubernetes.io/name": name,
        "app.kubernetes.io/managed-by": "mlops-ci",
        "mlops-ci/environment": env.name,
    }
    if version is not None:
        labels["app.kubernetes.io/version"] = version
    return labels


def _container(release: Release) -> dict[str, Any]:
    probe = {"httpGet": {"path": "/v2/health/ready", "port": CONTAINER_PORT}, "periodSeconds": 10}
    return {
        "name": "kserve-container",
        "image": release.image,
        "ports": [{"containerPort": CONTAINER_PORT, "protocol": "TCP"}],
        "env": [{"name": "MLOPS_MODEL_SHA256", "value": release.sha256}],
        "resources": _resources(release),
        "readinessProbe": probe,
        "livenessProbe": {**probe, "httpGet": {"path": "/v2/health/live", "port": CONTAINER_PORT}},
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": 10001,
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        },
    }


def _resources(release: Release) -> dict[str, Any]:
    """The profile's recommendation; a GPU image's pod asks for its GPU (an extended
    resource: the limit is what the scheduler counts, the request equals it)."""
    requests = {"cpu": release.cpu, "memory": release.memory}
    limits = {"memory": _double(release.memory)}
    if release.gpus:
        requests["nvidia.com/gpu"] = limits["nvidia.com/gpu"] = str(release.gpus)
    return {"requests": requests, "limits": limits}


def _deployment(name: str, env: DeployEnv, release: Release, replicas: int) -> dict[str, Any]:
    labels = _labels(name, env, release.version)
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": f"{name}-v{release.version}",
            "namespace": env.kubernetes.namespace,
            "labels": labels,
            "annotations": {"mlops-ci/traffic-percent": f"{release.percent:g}"},
        },
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0}},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "containers": [_container(release)],
                    "terminationGracePeriodSeconds": 30,
                },
            },
        },
    }


def _service(name: str, env: DeployEnv) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": name,
            "namespace": env.kubernetes.namespace,
            "labels": _labels(name, env),
        },
        "spec": {
            "selector": _labels(name, env),
            "ports": [{"name": "http", "port": 80, "targetPort": CONTAINER_PORT}],
        },
    }


def _hpa(name: str, env: DeployEnv, release: Release, replicas: int) -> dict[str, Any]:
    k = env.kubernetes
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {
            "name": f"{name}-v{release.version}",
            "namespace": k.namespace,
            "labels": _labels(name, env, release.version),
        },
        "spec": {
            "scaleTargetRef": {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "name": f"{name}-v{release.version}",
            },
            "minReplicas": replicas,
            "maxReplicas": max(replicas, round(k.max_replicas * release.percent / 100)),
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {
                        "name": "cpu",
                        "target": {
                            "type": "Utilization",
                            "averageUtilization": k.target_cpu_percent,
                        },
                    },
                }
            ],
        },
    }


def _inference_service(name: str, env: DeployEnv, releases: list[Release]) -> dict[str, Any]:
    """KServe: the newest release is the predictor; a share below 100 makes it a canary."""
    newest = releases[-1]
    k = env.kubernetes
    predictor: dict[str, Any] = {
        "minReplicas": k.replicas,
        "maxReplicas": k.max_replicas,
        "containers": [_container(newest)],
    }
    if len(releases) > 1 and newest.percent < 100:
        predictor["canaryTrafficPercent"] = int(round(newest.percent))
    return {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {
            "name": name,
            "namespace": k.namespace,
            "labels": _labels(name, env, newest.version),
            "annotations": {"serving.kserve.io/deploymentMode": "Serverless"},
        },
        "spec": {"predictor": predictor},
    }


def _double(quantity: str) -> str:
    digits = "".join(ch for ch in quantity if ch.isdigit())
    unit = quantity[len(digits) :]
    return f"{int(digits) * 2}{unit}" if digits else quantity


def write(folder: Path, docs: list[dict[str, Any]]) -> Path:
    """All manifests in one multi-document YAML file, for `kubectl apply -f`."""
    path = folder / "manifests.yaml"
    write_text_atomic(path, yaml.safe_dump_all(docs, sort_keys=False))
    return path


def kubeconfig_path(environ: dict[str, str] | None = None) -> Path | None:
    env = os.environ if environ is None else environ
    path = Path(env.get("KUBECONFIG") or Path.home() / ".kube" / "config")
    return path if path.is_file() else None


def plan(kubeconfig: Path, docs: list[dict[str, Any]]) -> list[str]:
    """What applying ``docs`` with ``kubeconfig`` would do: one line per object."""
    try:
        kube = yaml.safe_load(kubeconfig.read_text())
        context_name = kube.get("current-context")
        context = next(c["context"] for c in kube["contexts"] if c["name"] == context_name)
        cluster = next(c["cluster"] for c in kube["clusters"] if c["name"] == context["cluster"])
    except (OSError, yaml.YAMLError, KeyError, StopIteration, TypeError, AttributeError):
        raise InputError(
            f"{kubeconfig}: not a kubeconfig with a current-context naming a cluster"
        ) from None
    where = f"context {context_name} (cluster {context['cluster']} at {cluster.get('server')})"
    return [
        f"apply {d['kind']}/{d['metadata']['name']} in namespace {d['metadata']['namespace']} "
        f"to {where}"
        for d in docs
    ]


def read(path: Path) -> list[dict[str, Any]]:
    """The manifests ``write`` wrote."""
    try:
        docs = [d for d in yaml.safe_load_all(path.read_text()) if isinstance(d, dict)]
    except (OSError, yaml.YAMLError) as err:
        raise InputError(f"{path}: cannot read the manifests: {err}") from None
    return docs


def _dynamic_client(kubeconfig: Path) -> Any:
    try:
        from kubernetes import client as kube_client
        from kubernetes import config as kube_config
        from kubernetes import dynamic
    except ImportError:
        raise InputError(
            "applying manifests needs the kubernetes client",
            hint=f"{install_hint('kubernetes')}, or deploy with --dry-run and kubectl",
        ) from None
    configuration = kube_client.Configuration()
    kube_config.load_kube_config(config_file=str(kubeconfig), client_configuration=configuration)
    return dynamic.DynamicClient(kube_client.ApiClient(configuration=configuration))


def apply(kubeconfig: Path, docs: list[dict[str, Any]]) -> list[str]:
    """Server-side apply of every manifest with the kubernetes client."""
    client = _dynamic_client(kubeconfig)
    done = []
    for doc in docs:
        try:
            resource = client.resources.get(api_version=doc["apiVersion"], kind=doc["kind"])
            resource.server_side_apply(
                body=doc,
                namespace=doc["metadata"]["namespace"],
                field_manager=FIELD_MANAGER,
                force_conflicts=True,
            )
        except Exception as err:  # the cluster's own message is the useful one
            raise ServiceError(
                f"kubernetes: applying {doc['kind']}/{doc['metadata']['name']} failed: {err}"
            ) from None
        done.append(f"applied {doc['kind']}/{doc['metadata']['name']}")
    return done


def delete(kubeconfig: Path, docs: list[dict[str, Any]]) -> list[str]:
    """Delete every object of ``docs`` (in reverse order); ones already gone are skipped."""
    client = _dynamic_client(kubeconfig)
    done = []
    for doc in reversed(docs):
        kind, name = doc["kind"], doc["metadata"]["name"]
        try:
            resource = client.resources.get(api_version=doc["apiVersion"], kind=kind)
            resource.delete(name=name, namespace=doc["metadata"].get("namespace"))
        except Exception as err:
            if getattr(err, "status", None) == 404:
                continue
            raise ServiceError(f"kubernetes: deleting {kind}/{name} failed: {err}") from None
        done.append(f"deleted {kind}/{name}")
    return done


class KubernetesTarget:
    """One environment's manifests, in ``deploy.ENV.kubernetes.output_dir``/ENV: rendered for
    a split, then applied with the kubeconfig ``environ`` names (None: this process's), or
    written for `kubectl apply -f` or GitOps without one."""

    name = "kubernetes"
    routed: Literal[False] = False

    def __init__(self, config: Config, env: DeployEnv, environ: Mapping[str, str] | None) -> None:
        self.config = config
        self.env = env
        self.environ = environ
        self.folder = config.root / env.kubernetes.output_dir / env.name

    def deploy(
        self, version: VersionRecord, previous: VersionRecord | None, dry_run: bool
    ) -> Rendered:
        """The split of the rollout's first step (``version`` alone when nothing served)."""
        changed = previous is not None and previous.version != version.version
        first = self.env.rollout.steps[0] if changed else 100.0
        releases = []
        if previous is not None and first < 100:
            releases.append(release_for(self.config, previous, 100.0 - first))
        releases.append(release_for(self.config, version, first))
        docs = render(self.config.model.name, self.env, releases)
        path = write(self.folder, docs)
        split = {r.version: r.percent for r in releases}
        kubeconfig = self._kubeconfig()
        if kubeconfig is None:
            note = "no kubeconfig: apply with `kubectl apply -f` or commit for GitOps"
            return Rendered("written", split, path, note=note)
        if dry_run:
            shown = plan(kubeconfig, docs)
            return Rendered("written", split, path, shown, note="--dry-run: nothing applied")
        return Rendered("applied", split, path, apply(kubeconfig, docs), complete=first >= 100)

    def switch(self, version: VersionRecord) -> None:
        release = release_for(self.config, version, 100.0)
        write(self.folder, render(self.config.model.name, self.env, [release]))

    def undeploy(self) -> Stopped:
        """Delete what the manifests written here name; without a kubeconfig, say how."""
        path = self.folder / "manifests.yaml"
        if not path.is_file():
            return Stopped()
        kubeconfig = self._kubeconfig()
        if kubeconfig is None:
            return Stopped(note=f"no kubeconfig: delete with `kubectl delete -f {path}`")
        return Stopped(delete(kubeconfig, read(path)))

    def _kubeconfig(self) -> Path | None:
        return kubeconfig_path(None if self.environ is None else dict(self.environ))
