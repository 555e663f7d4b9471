"""undeploy: stop what an environment serves, on its target, and record who did it and why.

``local`` stops the environment's `mlops-ci serve` process; ``docker`` removes its front, its
version containers, their network and the front's routes; ``kubernetes`` deletes the objects
the deploy step applied (from the manifests it wrote), or, without a kubeconfig, says which
file to ``kubectl delete -f``. No alias moves: the registry still says what was approved for
the environment, and the next `deploy` starts it again. The versions that served are tagged
``mlops.deploy.ENV.status=undeployed`` with who, why and when, and the audit log gets a line.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field

from mlops_ci.config.types import Config, DeployEnv
from mlops_ci.errors import ServiceError
from mlops_ci.records import mlops_dir
from mlops_ci.registry import ModelRegistry
from mlops_ci.steps.deploy import environment
from mlops_ci.steps.gates import now_iso


@dataclass(frozen=True)
class UndeployResult:
    name: str
    env: str
    target: str
    status: str  # undeployed | nothing (nothing ran) | written (only the user can delete it)
    versions: list[str]  # the versions that served (or the alias's version)
    stopped: list[str]  # what was stopped or deleted, one line each
    by: str
    reason: str
    at: str
    note: str | None = None
    alias: str | None = None  # unchanged; named so the user knows what it still points to
    tagged: list[str] = field(default_factory=list)


def undeploy(
    config: Config,
    registry: ModelRegistry,
    env_name: str,
    by: str,
    reason: str,
    environ: Mapping[str, str],
) -> UndeployResult:
    env = environment(config, env_name)
    name = config.model.name
    aliased = registry.get_version_by_alias(name, env.alias)
    stopped, versions, note = _stop(config, env, environ)
    if not versions and aliased is not None:
        versions = [aliased.version]
    status = "written" if env.target == "kubernetes" and note else "undeployed"
    if not stopped and status == "undeployed":
        status = "nothing"
    at = now_iso()
    result = UndeployResult(
        name, env.name, env.target, status, versions, stopped, by, reason, at, note, env.alias
    )
    if status != "undeployed":
        return result  # nothing was stopped here: nothing to record
    prefix = f"mlops.deploy.{env.name}."
    tagged = []
    for version in versions:
        tags = registry.get_version(name, version).tags
        if tags.get(prefix + "status") in (None, "replaced", "rolled_back"):
            continue  # it was not serving here: its own record stays as it was
        registry.set_version_tags(
            name,
            version,
            {
                prefix + "status": "undeployed",
                prefix + "at": at,
                prefix + "undeployed.by": by,
                prefix + "undeployed.reason": reason,
            },
        )
        tagged.append(version)
    result = UndeployResult(**{**asdict(result), "tagged": tagged})
    with open(mlops_dir(config.root) / "deploy-audit.jsonl", "a", encoding="utf-8") as audit:
        audit.write(json.dumps({"action": "undeploy", **asdict(result)}) + "\n")
    return result


def _stop(
    config: Config, env: DeployEnv, environ: Mapping[str, str]
) -> tuple[list[str], list[str], str | None]:
    """(what was stopped, the versions it served, a note) for the environment's target."""
    if env.target == "local":
        from mlops_ci.targets.local import LocalTarget

        local = LocalTarget(config, env)
        proc = local.process()
        if proc is None:
            return [], [], None
        versions = list(local.traffic()["versions"])
        local.stop()
        return [f"`mlops-ci serve` process {proc.pid} on {proc.url}"], versions, None
    if env.target == "docker":
        from mlops_ci.targets.docker import LABEL_VERSION, DockerTarget

        target, why = DockerTarget.connect(config.model.name, env)
        if target is None:
            raise ServiceError(f"no Docker engine to stop {env.name} on: {why}")
        found = target.containers()
        versions = sorted(
            {c.labels[LABEL_VERSION] for c in found if LABEL_VERSION in c.labels}, key=_number
        )
        target.stop()
        return [f"container {c.name}" for c in found], versions, None
    from mlops_ci.targets import kubernetes as k8s

    path = config.root / env.kubernetes.output_dir / env.name / "manifests.yaml"
    if not path.is_file():
        return [], [], None
    kubeconfig = k8s.kubeconfig_path(dict(environ))
    if kubeconfig is None:
        return [], [], f"no kubeconfig: delete with `kubectl delete -f {path}`"
    return k8s.delete(kubeconfig, k8s.read(path)), [], None


def _number(version: str) -> tuple[int, str]:
    return (int(version), "") if version.isdigit() else (0, version)
