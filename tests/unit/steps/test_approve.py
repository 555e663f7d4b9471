"""approve: production refused without an approval, then let through; an approval is for
one environment."""

from __future__ import annotations

import pytest

from mlops_ci.config.types import Config
from mlops_ci.errors import GateFailed
from mlops_ci.steps.approve import approve
from mlops_ci.steps.deploy import deploy
from mlops_ci.steps.gates import check_gates
from tests.support.deployments import env_of, packaged_registry


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
