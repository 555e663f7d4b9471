"""What a deployment leaves behind: tags on the version, the alias, a JSON artifact on its run,
``.mlops/deploy.json`` and a line of ``.mlops/deploy-audit.jsonl``.

One writer for the deploy step and for the deploy journal, which settles a deploy a killed
process left (``resolved``: finished or reverted), so both leave the same records.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from mlops_ci.config.types import Config
from mlops_ci.records import JobFolder, append_line, write_json_atomic
from mlops_ci.registry import ModelRegistry, VersionRecord
from mlops_ci.steps.gates import Approval, Gate
from mlops_ci.steps.promotion_records import move_alias
from mlops_ci.targets.judging import StepRecord, split_text


@dataclass(frozen=True)
class DeployResult:
    name: str
    version: str
    env: str
    target: str
    status: str  # serving | ab | rolled_back | unchanged | written | applied | skipped
    previous: str | None
    split: dict[str, float]
    steps: list[StepRecord]
    gates: list[Gate]
    approval: Approval | None
    by: str
    at: str
    url: str | None = None
    alias: str | None = None  # the alias moved to the version, when it was
    note: str | None = None
    manifests: str | None = None
    plan: list[str] = field(default_factory=list)
    # a deploy a killed process left, settled by a later verb: finished | reverted | abandoned
    resolved: str | None = None
    interrupted: str | None = None  # the signal that ended this deploy (SIGTERM, SIGINT)
    shadow: dict[str, Any] | None = None  # {"version", "percent"} left scoring unseen


def record(
    config: Config, registry: ModelRegistry, result: DeployResult, previous: VersionRecord | None
) -> None:
    """On the version (tags + a JSON artifact on its run), the alias, and .mlops/deploy.json."""
    prefix = f"mlops.deploy.{result.env}."
    registry.set_version_tags(
        result.name,
        result.version,
        {
            prefix + "status": result.status,
            prefix + "target": result.target,
            prefix + "split": split_text(result.split),
            prefix + "by": result.by,
            prefix + "at": result.at,
            prefix + "url": result.url or result.manifests or "",
            prefix + "previous": result.previous or "",
        },
    )
    if result.alias:
        was = previous.version if previous is not None else None
        production = config.registry.production_alias
        move_alias(registry, result.name, result.alias, result.version, production, was)
        if previous is not None and previous.version != result.version:
            registry.set_version_tags(
                result.name,
                previous.version,
                {prefix + "status": "replaced", prefix + "at": result.at},
            )
    data = asdict(result)
    run_id = registry.get_version(result.name, result.version).run_id
    if run_id:
        with tempfile.TemporaryDirectory() as tmp:
            stamp = result.at.replace(":", "").replace("-", "")
            (Path(tmp) / f"{result.env}-{stamp}.json").write_text(json.dumps(data, indent=2))
            registry.log_artifacts(run_id, Path(tmp), "deployments")
    job = JobFolder(config.root)
    write_json_atomic(job.deploy, data)
    append_line(job.deploy_audit, data)
