"""Whether a process id names a live process (the input log's and the local target's owners),
and when it started (a pid the kernel gave to another process since is not the same one)."""

from __future__ import annotations

import os


def alive(pid: int) -> bool:
    """True while ``pid`` runs; a zombie (exited, not yet reaped by its parent) counts as gone."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    fields = _stat(pid)
    return fields is None or fields[0] != "Z"  # /proc unreadable: os.kill said it lives


def started(pid: int) -> int | None:
    """When ``pid`` started, in clock ticks since boot (/proc/PID/stat, field 22); None where
    it is gone or /proc does not say. With the pid, it names one process: pids are reused."""
    fields = _stat(pid)
    try:
        return int(fields[19]) if fields is not None else None
    except (ValueError, IndexError):
        return None


def _stat(pid: int) -> list[str] | None:
    """/proc/PID/stat's fields after the command name (which may hold spaces and ')'): the
    state first (field 3); None where it cannot be read."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[-1].split()
    except OSError:
        return None
