"""The docker target's container specs (only the front is published, the restart policy kept)
and its removal of a container that races its own exit."""

from __future__ import annotations

import pytest
from docker.errors import APIError, NotFound

from mlops_ci.config.types import Config
from mlops_ci.targets import docker as target
from mlops_ci.targets.docker import front_spec, remove, run_spec
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


class _Container:
    """A container whose forced removal fails with ``errors`` first, in turn."""

    def __init__(self, *errors: Exception) -> None:
        self.errors = list(errors)
        self.calls = 0

    def remove(self, force: bool) -> None:
        assert force
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)


IMPROPER = "cannot remove container 45 as it could not be stopped: container state improper"


def test_remove_retries_podmans_stop_race_and_takes_a_gone_container_as_removed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(target.time, "sleep", lambda _s: None)
    raced = _Container(APIError(IMPROPER), APIError(IMPROPER))
    remove(raced)
    assert raced.calls == 3 and not raced.errors
    gone = _Container(NotFound("no such container"))
    remove(gone)
    assert gone.calls == 1


def test_remove_raises_other_engine_errors_and_a_race_that_never_ends(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(target.time, "sleep", lambda _s: None)
    with pytest.raises(APIError, match="permission denied"):
        remove(_Container(APIError("permission denied")))
    stuck = _Container(*[APIError(IMPROPER)] * (target.REMOVE_TRIES + 1))
    with pytest.raises(APIError, match="state improper"):
        remove(stuck)
    assert stuck.calls == target.REMOVE_TRIES
