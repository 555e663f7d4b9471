"""undeploy: deletes what a kubernetes deploy wrote and records who and why; an unknown
environment is one line and exit 2."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from mlops_ci.config.types import Config
from mlops_ci.steps.approve import approve
from mlops_ci.steps.deploy import deploy
from mlops_ci.targets import kubernetes as k8s
from tests.support.deployments import fake_kubeconfig, packaged_registry


class FakeDynamicClient:
    """The part of kubernetes.dynamic.DynamicClient undeploy uses; no cluster runs here."""

    def __init__(self, gone: set[str]) -> None:
        self.deleted: list[tuple[str, str, str | None]] = []
        self.gone = gone
        self.resources = self

    def get(self, api_version: str, kind: str) -> Any:
        client = self

        class Resource:
            def delete(self, name: str, namespace: str | None) -> None:
                if name in client.gone:
                    error = RuntimeError(f"{kind} {name} not found")
                    error.status = 404  # type: ignore[attr-defined]
                    raise error
                client.deleted.append((kind, name, namespace))

        return Resource()


@pytest.mark.kubernetes_mock
def test_undeploy_deletes_what_kubernetes_deploy_wrote_and_records_who_and_why(
    config: Config, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlops_ci.config.types import load_config
    from mlops_ci.steps.undeploy import undeploy

    config.path.write_text(
        config.path.read_text()
        + "deploy:\n  production: {target: kubernetes, kubernetes: {namespace: ml}}\n"
    )
    config = load_config(config.path)
    reg = packaged_registry(config)
    approve(config, reg, "1", "production", "alice", "ok")
    kubeconfig = fake_kubeconfig(tmp_path)
    written = deploy(
        config, reg, "1", "production", "ci", {"KUBECONFIG": str(kubeconfig)}, dry_run=True
    )
    reg.set_alias(config.model.name, "production", "1")
    reg.set_version_tags(config.model.name, "1", {"mlops.deploy.production.status": "applied"})
    docs = k8s.read(Path(written.manifests or ""))

    without = undeploy(config, reg, "production", "bob", "decommissioned", {"KUBECONFIG": "/x"})
    assert without.status == "written" and "kubectl delete -f" in (without.note or "")
    assert reg.get_version(config.model.name, "1").tags["mlops.deploy.production.status"] == (
        "applied"
    )  # nothing was deleted, so nothing is recorded

    fake = FakeDynamicClient(gone={docs[0]["metadata"]["name"]})
    monkeypatch.setattr(k8s, "_dynamic_client", lambda _path: fake)
    result = undeploy(
        config, reg, "production", "bob", "decommissioned", {"KUBECONFIG": str(kubeconfig)}
    )
    assert result.status == "undeployed" and result.versions == ["1"] and result.tagged == ["1"]
    expected = [(d["kind"], d["metadata"]["name"], "ml") for d in reversed(docs[1:])]
    assert fake.deleted == expected  # reverse order; the object already gone is skipped
    assert result.stopped == [f"deleted {kind}/{name}" for kind, name, _ in expected]
    tags = reg.get_version(config.model.name, "1").tags
    assert tags["mlops.deploy.production.status"] == "undeployed"
    assert tags["mlops.deploy.production.undeployed.by"] == "bob"
    assert tags["mlops.deploy.production.undeployed.reason"] == "decommissioned"
    assert reg.get_version_by_alias(config.model.name, "production").version == "1"  # type: ignore[union-attr]
    audit = (config.root / ".mlops" / "deploy-audit.jsonl").read_text().splitlines()
    assert '"action": "undeploy"' in audit[-1] and '"by": "bob"' in audit[-1]


def test_undeploy_of_an_unknown_environment_is_one_line_and_exit_2(
    config: Config, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.support.helpers import run_cli

    code = run_cli("undeploy", "-c", str(config.path), "--env", "nowhere", "--reason", "x")
    err = capsys.readouterr().err
    assert code == 2 and "deploy.nowhere: no such environment" in err
    assert "Traceback" not in err
