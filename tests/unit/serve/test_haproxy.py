"""The HAProxy parts of the docker front that need no running proxy: the configuration (checked
by `haproxy -c` itself), the runtime commands of a route change, and what is read back."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlops_ci.serve.front import FORWARDED
from mlops_ci.serve.haproxy import (
    commands_for,
    delete_commands,
    inflight,
    parse_log,
    render_config,
)
from tests.support.haproxy import spec

pytestmark = pytest.mark.timeout(60)


def test_every_forwarded_route_and_only_those_are_allowed(tmp_path: Path) -> None:
    text = render_config(spec(tmp_path))
    assert "acl route1 path_reg ^/v2/models/[^/]+/infer$" in text
    assert "acl route0 path /score" in text and "acl method0 method POST" in text
    assert text.count("acl route") == len(FORWARDED)
    assert "del-header authorization unless control" in text
    assert "del-header cookie unless control" in text


def test_a_route_change_never_leaves_every_version_at_weight_zero() -> None:
    """v1 at 256 → v1 at 0 and v2 at 256: v2 is added and ready before v1 is lowered."""
    old = {"1": ("10.0.0.2:8080", 256)}
    new = {"1": ("10.0.0.2:8080", 0), "2": ("10.0.0.3:8080", 256)}
    commands = commands_for(old, new, {"1": 0, "2": 1}, "/m")
    ready = commands.index("set server split/2 state ready")
    lowered = commands.index("set weight split/1 0")
    assert ready < lowered
    assert "add map /m 2 pin1" in commands
    assert commands[-1] == "set map /m *served* 1,2"
    assert "pool-max-conn" in commands[0]  # a dynamic server reuses its connections
    # v1 leaves: unpinned and put in maintenance, deleted only once drained
    gone = commands_for(new, {"2": new["2"]}, {"1": 0, "2": 1}, "/m")
    assert gone[:3] == [
        "del map /m 1",
        "set server split/1 state maint",
        "set server pin0/1 state maint",
    ]
    assert delete_commands("1", 0) == ["del server split/1", "del server pin0/1"]
    moved = commands_for(new, {**new, "2": ("10.0.0.9:8080", 256)}, {"1": 0, "2": 1}, "/m")
    assert "set server split/2 addr 10.0.0.9 port 8080" in moved


def test_what_is_read_back_from_stat_and_the_log() -> None:
    stat = (
        "# pxname,svname,qcur,qmax,scur,smax\n"
        "front,FRONTEND,,,3,9\n"
        "split,1,0,0,2,5\n"
        "split,2,0,0,1,5\n"
        "pin0,1,0,0,1,1\n"
        "split,BACKEND,0,0,3,9\n"
        "control,control,0,0,1,1\n"
    )
    assert inflight(stat) == {"1": 3, "2": 1}
    line = parse_log(
        b'<134>Dec  4 21:00:00 haproxy[7]: {"b":"split","s":"2","p":"/score","c":200,"t":3}'
    )
    assert line is not None and (line.server, line.path, line.status) == ("2", "/score", 200)
    assert line.seconds == pytest.approx(0.003)
    assert parse_log(b"<134>Dec  4 21:00:00 haproxy[7]: Proxy front started.") is None
    assert parse_log(b'<134>x: {"b":"split"}') is None
