"""The environments of mlops.yaml's ``deploy`` map, typed: where each deploys (target, port),
its gates, its rollout, its Kubernetes settings and its shadow."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class RolloutConfig:
    mode: str  # canary | ab
    steps: tuple[float, ...]
    window_seconds: float
    probe_requests: int
    min_requests: int
    max_error_rate: float
    max_p99_ratio: float
    max_p99_ms: float


@dataclass(frozen=True)
class KubernetesConfig:
    namespace: str
    serving: str  # deployment | kserve
    replicas: int
    max_replicas: int
    target_cpu_percent: int
    output_dir: str


@dataclass(frozen=True)
class ShadowConfig:
    """deploy.ENV.shadow: which version shadows the served one, for what share of requests."""

    version: str  # N or @ALIAS
    percent: float = 100.0


@dataclass(frozen=True)
class DeployEnv:
    """One deployment environment of mlops.yaml's ``deploy`` map."""

    name: str
    target: str  # local | docker | kubernetes
    host: str
    port: int
    approval: str  # required | none
    require_comparison: bool
    require_pr_review: bool
    github_environment: str
    alias: str
    rollout: RolloutConfig
    kubernetes: KubernetesConfig
    restart_policy: str
    egress: bool = False  # docker: the version network is internal unless set
    shadow: ShadowConfig | None = None  # a version scoring a share of requests unseen
    require_live_rows: int | None = None  # deploy only after quality passed on this many rows


def deploy_env(name: str, e: dict[str, Any], production_alias: str) -> DeployEnv:
    r, k = e["rollout"], e["kubernetes"]
    return DeployEnv(
        name=name,
        target=e["target"],
        host=e["host"],
        port=int(e["port"]),
        approval=e["approval"],
        require_comparison=bool(e["require_comparison"]),
        require_pr_review=bool(e["require_pr_review"]),
        github_environment=e["github_environment"] or name,
        alias=e["alias"] or (production_alias if name == "production" else name),
        rollout=RolloutConfig(
            mode=r["mode"],
            steps=tuple(float(v) for v in r["steps"]),
            window_seconds=float(r["window_seconds"]),
            probe_requests=int(r["probe_requests"]),
            min_requests=int(r["min_requests"]),
            max_error_rate=float(r["max_error_rate"]),
            max_p99_ratio=float(r["max_p99_ratio"]),
            max_p99_ms=float(r["max_p99_ms"]),
        ),
        kubernetes=KubernetesConfig(
            namespace=k["namespace"],
            serving=k["serving"],
            replicas=int(k["replicas"]),
            max_replicas=int(k["max_replicas"]),
            target_cpu_percent=int(k["target_cpu_percent"]),
            output_dir=k["output_dir"],
        ),
        restart_policy=e["docker"]["restart_policy"],
        egress=bool(e["egress"]),
        shadow=(
            ShadowConfig(str(e["shadow"]["version"]), float(e["shadow"].get("percent", 100)))
            if e.get("shadow")
            else None
        ),
        require_live_rows=int(e["require_live"]["min_rows"]) if e.get("require_live") else None,
    )
