"""register: a new model version from a training run, only when its comparison passed.

Tags (lineage, metrics, verdict) are written with the version in one call, and a rerun for
the same run finds the version it made instead of adding a second one.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from mlops_ci.config.types import Config
from mlops_ci.errors import GateFailed, InputError
from mlops_ci.evaluation.comparison import FAIL, ComparisonResult, read_comparison
from mlops_ci.model.integrity import digest, file_manifest
from mlops_ci.provenance import who
from mlops_ci.records import (
    RegisterResult,
    write_registration,
)
from mlops_ci.registry import (
    TAG_COMPLETE,
    TAG_MODEL_SHA256,
    TAG_VERDICT,
    ModelRegistry,
    RunRecord,
)
from mlops_ci.steps.journal import check_finished, trained_run

_LINEAGE_PREFIXES = ("mlops.git.", "mlops.ci.", "mlops.data.", "mlops.env.", "mlflow.source.git.")


def register(
    config: Config, registry: ModelRegistry, run_id: str | None = None, force: bool = False
) -> RegisterResult:
    """Register ``run_id`` (default: the run of this checkout's last successful train, or the
    compared run where this checkout never trained).

    The comparison in .mlops/comparison.json must be of that run: another run's verdict is
    never applied to it, and ``force`` registers the right run with ``mlops.forced`` set.
    """
    comparison = read_comparison(config.root)
    if run_id is None:
        default = comparison.candidate.run_id if comparison else None
        run_id = trained_run(config, registry, "register", default)
    verdict = _verdict_for(comparison, run_id, force)
    run = registry.get_run(run_id)
    name = config.model.name
    alias = config.registry.candidate_alias

    existing = registry.find_versions_by_run(name, run_id)
    if existing:  # made by an earlier call, which may have died before the alias or the record
        # the first, as the adapter keeps it when a retried create made a copy
        version = min(existing, key=lambda v: int(v.version))
        if version.tags.get(TAG_COMPLETE) != "true":  # created without mlops-ci's tags
            sha = version.tags.get(TAG_MODEL_SHA256) or model_digest(registry, run)
            tags = {TAG_MODEL_SHA256: sha, **_tags(run, comparison, verdict, force)}
            registry.set_version_tags(name, version.version, tags)  # complete written last
        registry.set_alias(name, alias, version.version)
        result = RegisterResult(name, version.version, run_id, verdict, force, alias, existing=True)
        return _saved(config, result)

    check_finished(run, "registered")  # even with force: a killed run's model may be partial
    description = f"Registered by mlops-ci from run {run_id} (verdict: {verdict})."
    tags = _tags(run, comparison, verdict, force)
    tags[TAG_MODEL_SHA256] = model_digest(registry, run)
    created = registry.create_version(name, run, tags, description)
    registry.set_alias(name, alias, created.version)
    result = RegisterResult(name, created.version, run_id, verdict, force, alias, existing=False)
    return _saved(config, result)


def model_digest(registry: ModelRegistry, run: RunRecord) -> str:
    """sha256 over the model's files, recorded so that later loads can verify them."""
    if run.model_uri is None:
        raise InputError(f"run '{run.run_id}' has no model to register")
    with tempfile.TemporaryDirectory(prefix="mlops-model-") as tmp:
        return digest(file_manifest(registry.download_model(run.model_uri, Path(tmp))))


def _saved(config: Config, result: RegisterResult) -> RegisterResult:
    return write_registration(config.root, result)


def _verdict_for(comparison: ComparisonResult | None, run_id: str, force: bool) -> str:
    if comparison is None or comparison.candidate.run_id != run_id:
        if force:
            return "forced"
        if comparison is None:
            raise InputError(
                f"no comparison for run {run_id}: .mlops/comparison.json does not exist",
                hint="run `mlops-ci compare` first, or pass --force to register without one",
            )
        raise InputError(
            f".mlops/comparison.json is of run {comparison.candidate.run_id}, not of run "
            f"{run_id} that is to be registered; refusing to apply another run's verdict",
            hint=f"run `mlops-ci compare --run {run_id}` first, or pass --force to register "
            "it without a comparison",
        )
    if comparison.verdict == FAIL and not force:
        failed = [c.name for c in comparison.checks if c.status == FAIL]
        raise GateFailed(
            f"run {run_id} failed its comparison ({'; '.join(failed)}); not registering",
            hint="pass --force to register it anyway (recorded on the version)",
        )
    return comparison.verdict


def _tags(
    run: RunRecord, comparison: ComparisonResult | None, verdict: str, forced: bool
) -> dict[str, str]:
    tags = {k: v for k, v in run.tags.items() if k.startswith(_LINEAGE_PREFIXES)}
    tags.update({TAG_VERDICT: verdict, "mlops.forced": str(forced).lower()})
    tags["mlops.registered_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    tags["mlops.registered_by"] = who()
    tags["mlops.run_id"] = run.run_id
    if comparison is not None and comparison.candidate.run_id == run.run_id:
        for metric, value in comparison.candidate.metrics.items():
            tags[f"mlops.metric.{metric}"] = f"{value:.6g}"
        tags["mlops.compare.data_sha256"] = comparison.evaluation["sha256"]
        if comparison.production is not None and comparison.production.version:
            tags["mlops.compare.baseline_version"] = comparison.production.version
        sig = comparison.significance
        if sig is not None:  # the paired bootstrap's interval of candidate - production
            tags["mlops.compare.interval"] = (
                f"{sig.metric} {sig.difference:+.4g} [{sig.ci_low:+.4g}, {sig.ci_high:+.4g}] "
                f"at {sig.confidence:.0%}"
            )
    tags[TAG_COMPLETE] = "true"
    return tags
