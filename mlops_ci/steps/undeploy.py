"""undeploy: stop what an environment serves, on its target, and record who did it and why.

``local`` stops the environment's `mlops-ci serve` process; ``docker`` removes its front, its
version containers, their network and the front's routes; ``kubernetes`` deletes the objects
the deploy step applied (from the manifests it wrote), or, without a kubeconfig, says which
file to ``kubectl delete -f``. No alias moves: the registry still says what was approved for
the environment, and the next `deploy` starts it again. The versions that served are tagged
``mlops.deploy.ENV.status=undeployed`` with who, why and when, and the audit log gets a line.
It holds the environment's deploy lock (refused while a deploy runs) and closes the journal of a
deploy a killed process left: what that deploy started is stopped with the rest.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field

from mlops_ci.config.types import Config
from mlops_ci.errors import ServiceError
from mlops_ci.records import JobFolder, append_line
from mlops_ci.registry import ModelRegistry
from mlops_ci.steps.deploy import environment
from mlops_ci.steps.deploy_journal import Journal, locked
from mlops_ci.steps.gates import now_iso
from mlops_ci.targets import TARGETS, Targets, target_for
from mlops_ci.targets.base import TargetUnavailable


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
    targets: Targets = TARGETS,
) -> UndeployResult:
    env = environment(config, env_name)
    name = config.model.name
    aliased = registry.get_version_by_alias(name, env.alias)
    with locked(config.root, env.name, "undeploy of"):
        try:
            done = target_for(config, env, registry, environ, targets).undeploy()
        except TargetUnavailable as err:
            raise ServiceError(f"no {err.what} to stop {env.name} on: {err.why}") from None
        journal = Journal(config.root, env.name)
        dead = journal.dead()
        if dead is not None:  # what a killed deploy left is stopped with the rest
            journal.settled(dead, "undeployed", "undeploy")
    stopped, versions, note = done.stopped, done.versions, done.note
    if not versions and aliased is not None:
        versions = [aliased.version]
    status = "written" if note else "undeployed"  # a note: only the user can delete them
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
    append_line(JobFolder(config.root).deploy_audit, {"action": "undeploy", **asdict(result)})
    return result
