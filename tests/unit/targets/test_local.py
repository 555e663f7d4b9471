"""The local target: a busy port is named before anything starts; the file holding its admin
token is never readable by others."""

from __future__ import annotations

import json
from pathlib import Path

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


@pytest.mark.parametrize("umask", [0o022, 0o000])
def test_service_json_is_never_readable_by_others_not_even_for_a_moment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, umask: int
) -> None:
    """The admin token's file is created 0600: its mode is checked at the rename that makes it
    visible (not fixed afterwards by a chmod), whatever the umask."""
    import os
    import stat

    from mlops_ci.targets.local import Process, _write_private

    seen: list[int] = []
    real_replace = os.replace

    def replace(src: str | Path, dst: str | Path) -> None:
        seen.append(stat.S_IMODE(os.stat(src).st_mode))
        real_replace(src, dst)

    def no_chmod(*args: object) -> None:
        raise AssertionError("a chmod after the file exists leaves a moment it is readable")

    monkeypatch.setattr(os, "replace", replace)
    monkeypatch.setattr(os, "chmod", no_chmod)
    path = tmp_path / "deploy" / "qa" / "service.json"
    old = os.umask(umask)
    try:
        _write_private(path, Process(42, "http://127.0.0.1:1", "s3cret-token", "serve.log"))
        _write_private(path, Process(43, "http://127.0.0.1:1", "other-token", "serve.log"))
    finally:
        os.umask(old)
    assert seen == [0o600, 0o600]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert json.loads(path.read_text())["token"] == "other-token"
    assert [p.name for p in path.parent.iterdir()] == ["service.json"], "no temporary file left"


def test_a_pid_the_kernel_gave_to_another_process_is_not_the_serving_process(
    config: Config,
) -> None:
    """service.json names a pid and when it started: a pid alive now but started at another
    time (the serving process died, its pid reused) is not the endpoint, so the next verb
    starts one instead of asking a stranger for its traffic. A record without the start time
    (written before it was kept) is trusted on the pid alone; a corrupt pid is no process."""
    import os

    from mlops_ci.procs import started
    from mlops_ci.targets.local import LocalTarget, Process, _write_private

    target = LocalTarget(config, env_of(config, "staging", port=1, host="127.0.0.1"))
    me, when = os.getpid(), started(os.getpid())
    assert when is not None and when > 0
    _write_private(target.state_path, Process(me, "http://127.0.0.1:1", "t", "serve.log", when))
    assert target.process() == Process(me, "http://127.0.0.1:1", "t", "serve.log", when)
    _write_private(target.state_path, Process(me, "http://127.0.0.1:1", "t", "log", when - 1))
    assert target.process() is None and not target.running()
    _write_private(target.state_path, Process(me, "http://127.0.0.1:1", "t", "log"))
    assert target.process() is not None
    record = json.loads(target.state_path.read_text())
    target.state_path.write_text(json.dumps({**record, "pid": "not a pid"}))
    assert target.process() is None
