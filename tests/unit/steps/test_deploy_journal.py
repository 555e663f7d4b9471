"""The deploy journal's mechanics: the environment's lock tells a live deploy from a dead one,
the journal's states, and signals raised as Interrupted (or held back while records are
written)."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from mlops_ci.errors import InputError
from mlops_ci.steps.deploy_journal import (
    Interrupted,
    Journal,
    Signals,
    holder,
    interruptible,
    lock_path,
    locked,
    maybe_locked,
)


def test_the_lock_is_one_holders_and_names_its_pid_to_the_refused(tmp_path: Path) -> None:
    with locked(tmp_path, "qa", "deploy to"):
        assert holder(tmp_path, "qa") == str(os.getpid())
        Journal(tmp_path, "qa").begin(version="7", by="ci")
        with (
            pytest.raises(
                InputError, match=rf"a deploy of v7 to qa is running \(pid {os.getpid()}"
            ),
            locked(tmp_path, "qa", "rollback of"),
        ):
            pass
        with maybe_locked(tmp_path, "qa") as other:
            assert other is None
        with locked(tmp_path, "prod", "deploy to"):
            pass  # another environment's lock is its own
    with maybe_locked(tmp_path, "qa") as again:
        assert again is not None, "released with the block"
    assert lock_path(tmp_path, "qa").is_file()


def test_a_journal_is_dead_only_while_running_and_closed_with_its_outcome(tmp_path: Path) -> None:
    journal = Journal(tmp_path, "qa")
    assert journal.dead() is None
    journal.begin(version="2", back_to=None, by="ci")
    journal.update(phase="moving", step=50.0, split={"1": 50.0, "2": 50.0})
    dead = journal.dead()
    assert dead is not None and dead["state"] == "running" and dead["pid"] == os.getpid()
    assert (dead["phase"], dead["step"], dead["split"]) == ("moving", 50.0, {"1": 50.0, "2": 50.0})
    journal.close("serving")
    assert journal.dead() is None and journal.read()["state"] == "serving"  # type: ignore[index]
    later = Journal(tmp_path, "qa")
    later.begin(version="3", by="ci")
    found = later.dead()
    assert found is not None
    Journal(tmp_path, "qa").settled(found, "reverted", "status")
    closed = later.read()
    assert closed is not None and later.dead() is None
    assert (closed["state"], closed["resolved"], closed["settled_by"]) == (
        "killed",
        "reverted",
        "status",
    )


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_is_interrupted_with_the_shells_exit_code(signum: int, code: int) -> None:
    kept = signal.getsignal(signum)
    with pytest.raises(Interrupted) as stopped, interruptible():
        signal.raise_signal(signum)
    assert stopped.value.exit_code == code
    assert str(stopped.value) == f"terminated by {signal.Signals(signum).name}"
    assert signal.getsignal(signum) is kept


def test_a_deferred_signal_waits_for_the_block_then_is_raised() -> None:
    signals = Signals()
    with signals.deferred():
        signals.handle(signal.SIGTERM, None)  # what the handler does: nothing raised here
        done = True
    assert done and signals.interrupted() is not None
    with pytest.raises(Interrupted, match="recorded, then stopped") as stopped:
        signals.raise_pending("recorded, then stopped")
    assert stopped.value.exit_code == 143
    Signals().raise_pending("nothing caught: nothing raised")
