"""The front's controller: a version half deleted on an earlier pass is finished."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.mark.timeout(60)
def test_a_version_half_deleted_on_an_earlier_pass_is_finished(tmp_path: Path) -> None:
    """del server split/1 went through, pin0/1 had idle connections: the next pass deletes
    pin0/1, takes 'No such server' for split/1 as done, and frees the slot."""
    import asyncio

    from mlops_ci.serve.front import Controller, Runtime

    class Answers(Runtime):
        def __init__(self) -> None:
            super().__init__(tmp_path / "none.sock")
            self.sent: list[str] = []

        async def run(self, command: str) -> str:
            self.sent.append(command)
            if command == "show stat":
                return "# pxname,svname,scur\nsplit,2,0\n"
            if command == "del server split/1":
                return "No such server."
            return "Server deleted." if command.startswith("del server") else ""

    runtime = Answers()
    controller = Controller("m", tmp_path, lambda v, u: None, runtime, "/m")
    controller.slots = {"1": 0, "2": 1}
    controller.draining = {"1": ("10.0.0.2:8080", 0)}
    asyncio.run(controller.collect_drained())
    assert controller.draining == {} and controller.slots == {"2": 1}
    assert "del server pin0/1" in runtime.sent
