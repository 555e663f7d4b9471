"""The local target: a busy port is named before anything starts."""

from __future__ import annotations

import pytest

from mlops_ci.config.types import Config
from tests.support.deployments import env_of


def test_a_busy_port_is_named_not_left_to_uvicorn(config: Config) -> None:
    import socket

    from mlops_ci.errors import ServiceError
    from mlops_ci.targets.local import LocalTarget

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        env = env_of(config, "staging", port=port, host="127.0.0.1")
        with pytest.raises(ServiceError, match=f"port {port} on 127.0.0.1 is in use"):
            LocalTarget(config, env).start("1", config.root)
