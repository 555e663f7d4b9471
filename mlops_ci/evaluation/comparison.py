"""The record of a comparison (comparison.json): the verdict, both models' scores, the checks.

Its own module, below the step that makes it (``steps/compare``) and the code that renders it
(``report.comparison``, ``steps/report``, ``steps/register``), so each imports it downwards.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from mlops_ci.evaluation.bootstrap import BootstrapResult
from mlops_ci.evaluation.importance import Importance
from mlops_ci.evaluation.slices import SliceScore
from mlops_ci.records import JobFolder, read_json

PASS, FAIL, NO_BASELINE = "pass", "fail", "no-baseline"


@dataclass(frozen=True)
class ModelScore:
    role: str  # candidate | production
    run_id: str | None
    version: str | None
    metrics: dict[str, float]
    # what serving it costs (COST_METRICS), measured when a gate rule names a cost
    cost: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Check:
    name: str  # e.g. "f1_macro not_worse_than_production (tolerance 0.005)"
    metric: str
    status: str  # pass | fail | skipped
    detail: str


@dataclass(frozen=True)
class ComparisonResult:
    verdict: str
    model: str
    candidate: ModelScore
    production: ModelScore | None
    checks: tuple[Check, ...]
    significance: BootstrapResult | None
    evaluation: dict[str, Any]
    created_at: float
    importance: dict[str, Importance] = field(default_factory=dict)  # role -> its importance
    slices: tuple[SliceScore, ...] = ()
    # what differs between the production run and the candidate run: {"params": {name:
    # [production, candidate]}, "commit": [...], "data_fingerprint": [...]}
    changes: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @staticmethod
    def from_dict(data: dict[str, Any]) -> ComparisonResult:
        sig = data.get("significance")
        prod = data.get("production")
        return ComparisonResult(
            verdict=data["verdict"],
            model=data["model"],
            candidate=ModelScore(**data["candidate"]),
            production=ModelScore(**prod) if prod else None,
            checks=tuple(Check(**c) for c in data["checks"]),
            significance=BootstrapResult(**sig) if sig else None,
            evaluation=data["evaluation"],
            created_at=data["created_at"],
            importance={
                role: Importance.from_dict(found)
                for role, found in (data.get("importance") or {}).items()
            },
            slices=tuple(SliceScore(**s) for s in data.get("slices") or ()),
            changes=data.get("changes") or {},
        )


def read_comparison(root: Path) -> ComparisonResult | None:
    """comparison.json of this checkout (``compare`` writes it), None when there is none."""
    data = read_json(JobFolder(root).comparison)
    return ComparisonResult.from_dict(data) if data else None
