"""The traffic split: routes by weight and pins, weights parsed, shared between workers."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

from mlops_ci.serve.payload import PayloadError
from mlops_ci.serve.router import Router, SharedState, Split, StateFile, parse_split


def test_split_routes_by_weight_and_pins() -> None:
    split = Split({"1": 90.0, "2": 10.0})
    assert split.choose(0.0) == "1" and split.choose(0.8999) == "1" and split.choose(0.9) == "2"
    assert split.choose(0.999999) == "2"
    draws = random.Random(7)
    share = sum(split.choose(draws.random()) == "2" for _ in range(20_000)) / 20_000
    assert 0.09 < share < 0.11
    assert Split({"1": 0.0, "2": 5.0}).choose(0.0) == "2"
    router = Router(["1", "2"], split)
    assert router.route("2") == "2"
    with pytest.raises(PayloadError, match="not served here"):
        router.route("3")


def test_parse_split_refuses_bad_weights() -> None:
    loaded = {"1", "2"}
    assert parse_split({"1": 1, "2": 3}, loaded).shares() == {"1": 0.25, "2": 0.75}
    for bad, says in [
        ({}, "must be an object"),
        ({"3": 1}, "not loaded"),
        ({"1": -1}, "must be a number >= 0"),
        ({"1": "10"}, "must be a number >= 0"),
        ({"1": 0}, "at least one weight"),
    ]:
        with pytest.raises(PayloadError, match=says):
            parse_split(bad, loaded)


def test_state_file_carries_changes_between_workers(tmp_path: Path) -> None:
    path = tmp_path / "service.json"
    first = StateFile(path, interval=0)
    first.write(SharedState({"1": 1.0}, {"1": "/models/1"}))
    second = StateFile(path, interval=0)
    assert second.poll() == SharedState({"1": 1.0}, {"1": "/models/1"})
    assert second.poll() is None, "unchanged: nothing to apply"
    first.write(SharedState({"1": 0.0, "2": 1.0}, {"1": "/models/1", "2": "/models/2"}))
    os.utime(path, ns=(1, 1))  # a distinct mtime even on a coarse-grained clock
    assert second.poll() == SharedState({"1": 0.0, "2": 1.0}, {"1": "/models/1", "2": "/models/2"})
    assert first.poll() is not None  # the writer sees the touched file as changed too
