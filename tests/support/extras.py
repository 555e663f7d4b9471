"""A module hidden the way a missing distribution looks to Python (``sys.modules[name] =
None``: ``find_spec`` gives None and ``import name`` raises ImportError)."""

from __future__ import annotations

import sys

import pytest


def hide(monkeypatch: pytest.MonkeyPatch, *modules: str) -> None:
    for name in modules:
        monkeypatch.setitem(sys.modules, name, None)
