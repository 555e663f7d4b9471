"""What the deploy tests share: an environment of the example's config with changes, a
registry of packaged versions, a kubeconfig naming a cluster that is not there."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import yaml

from mlops_ci.config.types import Config, DeployEnv
from tests.support.fakes import InMemoryRegistry


def env_of(config: Config, name: str = "production", **changes: Any) -> DeployEnv:
    return dataclasses.replace(config.deploy[name], **changes)


def packaged_registry(config: Config, versions: int = 2) -> InMemoryRegistry:
    from sklearn.dummy import DummyClassifier

    reg = InMemoryRegistry()
    for _ in range(versions):
        run = reg.add_run(DummyClassifier())
        reg.create_version(
            config.model.name,
            run,
            {
                "mlops.compare.verdict": "pass",
                "mlops.package.complete": "true",
                "mlops.package.sha256": "ab" * 32,
                "mlops.package.recommended.cpu": "100m",
                "mlops.package.recommended.memory": "128Mi",
            },
            "",
        )
    return reg


def fake_kubeconfig(folder: Path) -> Path:
    """A kubeconfig naming a cluster that is not there (nothing here talks to it)."""
    kubeconfig = folder / "kubeconfig"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "current-context": "ml-prod",
                "contexts": [{"name": "ml-prod", "context": {"cluster": "prod", "user": "ci"}}],
                "clusters": [{"name": "prod", "cluster": {"server": "https://10.0.0.1:6443"}}],
                "users": [{"name": "ci", "user": {"token": "not-a-real-token"}}],
            }
        )
    )
    return kubeconfig
