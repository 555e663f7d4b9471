"""What a training run records of its stages: the run's cache key, the MLflow params
``stage.NAME.*``, the artifacts ``stages/NAME/`` that restore a stage on an empty disk, and
the lineage graph ``lineage/stages.json`` the report draws."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

from mlops_ci.config.types import Config
from mlops_ci.errors import InputError
from mlops_ci.pipeline.cache import StageCache
from mlops_ci.pipeline.run import RAN, StageRun
from mlops_ci.provenance import sha256_file
from mlops_ci.records import JobFolder, write_json_atomic

STAGES_ARTIFACT = "lineage/stages.json"  # the stages of the run: the lineage graph


def pipeline_key(config: Config, stages: list[StageRun]) -> str:
    """The run's cache key with stages: every stage's key (which covers its deps, params and
    the environment), the flavor and the output layout."""
    body = {
        "stages": [[s.name, s.key] for s in stages],
        "flavor": config.model.flavor,
        "outputs": [config.train.model_output, config.train.metrics_output],
    }
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def stage_params(stages: list[StageRun]) -> dict[str, str]:
    """MLflow params ``stage.NAME.*`` (command, key, cached, digests of deps and outs) and the
    values of the params the stages read (a params.yaml key under its own dotted name)."""
    out: dict[str, str] = {}
    for s in stages:
        out.update({f"{k}": str(v) for k, v in s.params.items()})
        out[f"stage.{s.name}.command"] = s.command[:500]
        out[f"stage.{s.name}.key"] = s.key
        out[f"stage.{s.name}.cached"] = str(s.state != RAN).lower()
        out[f"stage.{s.name}.deps_sha256"] = s.digest(s.deps)
        out[f"stage.{s.name}.outs_sha256"] = s.digest(s.outs)
    return out


def stage_artifacts(
    work: Path, root: Path, stages: list[StageRun], environment: str
) -> dict[str, Path]:
    """``stages/NAME/`` (record.json and the outs) for each stage no MLflow run holds yet."""
    cache = StageCache(JobFolder(root).cache)
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    out: dict[str, Path] = {}
    for s in stages:
        if s.holder is not None:
            continue
        folder = work / s.name
        record = {**stage_summary(s, full=True), "environment": environment}
        write_json_atomic(folder / "record.json", record)
        for rel, sha in s.outs.items():
            target = folder / "outs" / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(cache.blob(sha), target)
            if sha256_file(target) != sha:  # never upload a blob edited in the cache
                raise InputError(
                    f"stage '{s.name}': .mlops/cache holds {rel} with another sha256 than the "
                    "stage wrote; refusing to upload it",
                    hint="delete .mlops/cache and rerun `mlops-ci train`",
                )
        out[f"stages/{s.name}"] = folder
    return out


def stage_summary(s: StageRun, full: bool = False) -> dict[str, Any]:
    """A stage as the train record and the report see it (``full``: with its manifests)."""
    brief: dict[str, Any] = {
        "name": s.name,
        "state": s.state,
        "why": s.why,
        "seconds": round(s.seconds, 3),
        "key": s.key,
        "upstream": list(s.upstream),
        "holder": s.holder,
    }
    if full:
        brief.update(command=s.command, deps=s.deps, params=s.params, outs=s.outs)
    return brief
