"""The docker target's container specs: only the front is published, the restart policy kept."""

from __future__ import annotations

from mlops_ci.config.types import Config
from mlops_ci.targets.docker import front_spec, run_spec
from tests.support.deployments import env_of


def test_docker_specs_publish_only_the_front_and_keep_the_restart_policy(config: Config) -> None:
    env = env_of(config, restart_policy="on-failure", port=9000)
    spec = run_spec("iris-classifier", "3", "ghcr.io/acme/iris-classifier:3", env)
    assert "ports" not in spec and spec["network"] == "mlops-ci-iris-classifier-production"
    assert spec["name"] == "mlops-ci-iris-classifier-production-v3"
    assert spec["restart_policy"] == {"Name": "on-failure", "MaximumRetryCount": 5}
    assert spec["labels"]["io.mlops-ci.environment"] == "production" and spec["read_only"]
    assert spec["labels"]["io.mlops-ci.role"] == "version"
    front = front_spec("iris-classifier", "ghcr.io/acme/iris-classifier:3", env, "t0ken")
    assert front["ports"] == {"8080/tcp": ("127.0.0.1", 9000)}
    assert front["command"][:2] == ["mlops-ci", "front"] and front["environment"]
    assert front["labels"]["io.mlops-ci.role"] == "front" and front["read_only"]
