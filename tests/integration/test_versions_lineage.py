"""versions, tag and lineage against a real MLflow (SQLite) registry whose versions went
through the real steps: register, promote, approve, deploy (local target) and rollback."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from mlops_ci.config.types import Config
from mlops_ci.registry.mlflow import MlflowRegistry
from mlops_ci.steps.approve import approve
from mlops_ci.steps.deploy import deploy
from mlops_ci.steps.lineage import lineage, markdown
from mlops_ci.steps.promote import promote
from mlops_ci.steps.rollback import rollback
from mlops_ci.steps.tag import tag
from mlops_ci.steps.versions import versions
from mlops_ci.targets.local import LocalTarget
from tests.integration.test_deploy_local import qa_project
from tests.support.helpers import run_cli

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

History = tuple[Config, MlflowRegistry, list[str]]


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> Iterator[History]:
    """Three versions: v1 promoted to production and approved for qa, v2 deployed to qa and
    rolled back to v1 there, v3 registered only."""
    import os

    saved = os.environ.pop("MLFLOW_TRACKING_URI", None)
    rollout = "{steps: [100], window_seconds: 0.5, probe_requests: 5, min_requests: 5}"
    config, reg, versions_, _ = qa_project(tmp_path_factory.mktemp("h"), rollout, [1.0, 0.5, 0.1])
    v1, v2, _v3 = versions_
    target = LocalTarget(config, config.deploy["qa"])
    try:
        promote(config, reg, v1, by="ada", reason="best f1 on the March data", force=True)
        approve(config, reg, v1, "qa", by="grace", reason="reviewed the slices")
        assert deploy(config, reg, v1, "qa", "ci-bot", {}).status == "serving"
        assert deploy(config, reg, v2, "qa", "ci-bot", {}).status == "serving"
        rollback(config, reg, "qa", by="linus", reason="latency doubled")
        yield config, reg, versions_
    finally:
        target.stop()
        if saved is not None:
            os.environ["MLFLOW_TRACKING_URI"] = saved


def test_versions_are_newest_first_with_aliases_verdict_and_deployment(history: History) -> None:
    config, reg, (v1, v2, v3) = history
    rows = versions(config, reg)
    assert [r.version for r in rows] == [v3, v2, v1]
    first = rows[-1]
    assert set(first.aliases) == {"production", "qa"}  # qa moved back to it by the rollback
    assert first.deployed == {"qa": "serving"} and rows[1].deployed == {"qa": "rolled_back"}
    assert first.metric == config.gate.primary_metric and first.value is not None
    assert all(r.registered_at and r.registered_by for r in rows)
    assert [r.version for r in versions(config, reg, limit=2)] == [v3, v2]
    assert [r.version for r in versions(config, reg, alias="qa")] == [v1]


def test_versions_filter_by_user_tags_and_verdict_in_the_registry(history: History) -> None:
    config, reg, (v1, v2, v3) = history
    tag(config, reg, v1, {"team": "fraud"})
    tag(config, reg, "@production", {"reviewed": "yes"})
    tag(config, reg, v3, {"team": "risk"})
    assert [r.version for r in versions(config, reg, {"team": "fraud"})] == [v1]
    assert [r.version for r in versions(config, reg, {"team": "fraud", "reviewed": "yes"})] == [v1]
    assert versions(config, reg, {"team": "fraud", "reviewed": "no"}) == []
    assert versions(config, reg, {"team": "risk"}, alias="production") == []
    assert versions(config, reg, {"team": "fraud"})[0].tags == {"reviewed": "yes", "team": "fraud"}
    for verdict in ("pass", "fail", "no-baseline"):
        expected = [
            v for v in (v3, v2, v1) if reg.get_version(config.model.name, v).tags.get(
                "mlops.compare.verdict") == verdict
        ]  # fmt: skip
        assert [r.version for r in versions(config, reg, verdict=verdict)] == expected


def test_tag_refuses_the_tools_namespaces_and_bad_pairs(
    history: History, capsys: pytest.CaptureFixture[str]
) -> None:
    config, _, (v1, _, _) = history
    root = str(config.root)
    assert run_cli("tag", "-c", root, "--version", v1, "mlops.verdict=pass") == 2
    assert "the mlops. namespace is written by the tools only" in capsys.readouterr().err
    for key in ("MLOPS.verdict", "MLflow.source"):  # the namespaces, whatever their case
        assert run_cli("tag", "-c", root, "--version", v1, f"{key}=pass") == 2
        assert "namespace is written by the tools only" in capsys.readouterr().err
    assert run_cli("tag", "-c", root, "--version", v1, "novalue") == 2
    assert "KEY=VALUE 'novalue': expected KEY=VALUE" in capsys.readouterr().err
    assert run_cli("versions", "-c", root, "--tag", "a'b=c") == 2
    assert "letters, digits" in capsys.readouterr().err
    assert run_cli("tag", "-c", root, "--version", "@nope", "k=v") == 2
    assert "has no alias 'nope'" in capsys.readouterr().err


def test_bad_references_are_bad_input_not_a_registry_outage(
    history: History, capsys: pytest.CaptureFixture[str]
) -> None:
    """What MLflow would refuse as a malformed request is refused first, exit 2 naming the
    argument, never exit 3 and 'check MLFLOW_TRACKING_URI'."""
    config, _, _ = history
    root = str(config.root)
    cases = [
        (["versions", "-c", root, "--tag", "k=a\\", "--tag", "x=y"], "--tag 'k=a\\'"),
        (["lineage", "-c", root, "@production\\"], "'@production\\': an alias is"),
        (["lineage", "-c", root, "@" + "a" * 5000], "an alias is 1 to 255"),
        (["tag", "-c", root, "--version", "@x y", "k=v"], "'@x y': an alias is"),
        (["versions", "-c", root, "--alias", "a'b"], "'@a'b': an alias is"),
        (["lineage", "-c", root, "²"], "expected a version number or @alias"),
    ]
    for args, says in cases:
        assert run_cli(*args) == 2, args
        err = capsys.readouterr().err
        assert says in err and "MLFLOW_TRACKING_URI" not in err, (args, err)
        assert len(err.splitlines()) <= 2 and len(err) < 400, err


def test_lineage_tells_the_whole_trail_in_time_order(history: History) -> None:
    config, reg, (v1, v2, _) = history
    second = lineage(config, reg, v2)
    whats = [e.what for e in second.events]
    assert whats[0] == "registered"
    assert "deployed to qa" in whats and "rolled back in qa" in whats
    assert whats.index("deployed to qa") < whats.index("rolled back in qa")
    assert [e.at for e in second.events] == sorted(e.at for e in second.events)
    back = next(e for e in second.events if e.what == "rolled back in qa")
    assert (back.by, back.detail) == ("linus", "latency doubled")
    assert second.serving == {}
    assert second.trained["data fingerprint"] and second.trained["environment lock sha256"]
    assert second.params["C"] == "0.5" and second.inputs and len(second.inputs) >= 1
    assert second.compared["verdict"] and "f1_macro" in second.compared
    assert "commit: not recorded" in second.missing  # the project is not a git work tree

    first = lineage(config, reg, "@production")
    assert first.version == v1
    events = {e.what: e for e in first.events}
    assert events["promoted to @production"].by == "ada"
    assert events["promoted to @production"].detail.startswith("best f1 on the March data")
    assert events["approved for qa"].by == "grace"
    assert "deployed to qa" in events
    assert list(first.serving) == ["qa"] and first.serving["qa"].startswith("serving at http")
    page = markdown(first)
    assert "| when (UTC) | what | by | detail |" in page and "grace" in page
    assert "`data/train.csv`" in page  # the input manifest, file by file


def test_lineage_cli_in_each_format(history: History, capsys: pytest.CaptureFixture[str]) -> None:
    config, _, (v1, _, _) = history
    root = str(config.root)
    assert run_cli("lineage", "-c", root, v1, "--format", "json") == 0
    loaded = json.loads(capsys.readouterr().out)
    assert loaded["version"] == v1 and loaded["events"]
    assert run_cli("lineage", "-c", root, "@production", "--format", "md") == 0
    assert "audit trail" in capsys.readouterr().out
    assert run_cli("lineage", "-c", root, f"v{v1}") == 0
    out = capsys.readouterr().out
    assert "history (UTC)" in out and "promoted to @production" in out
    assert run_cli("lineage", "-c", root, "99") == 2
    assert "has no version '99'" in capsys.readouterr().err
    assert Path(root, "mlops.yaml").is_file()
