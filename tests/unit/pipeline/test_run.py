"""Running stages: a stage's key follows content, never mtime; a record naming a path outside
the stage's outs is never restored."""

from __future__ import annotations

import os
from pathlib import Path

from mlops_ci.config.types import load_config
from mlops_ci.pipeline.run import _deps, _fits, load_pipeline, stage_key
from tests.support.stages import GOOD, project


def test_a_stage_key_changes_with_content_never_with_mtime(tmp_path: Path) -> None:
    pipeline = load_pipeline(load_config(project(tmp_path, GOOD)))
    assert pipeline is not None
    prepare = pipeline.stage("prepare")

    def key() -> str:
        return stage_key(prepare, _deps(tmp_path, prepare.deps, {}, []), {}, "env")

    first = key()
    os.utime(tmp_path / "raw.csv", (1, 1))
    assert key() == first
    (tmp_path / "raw.csv").write_text("y\n")
    assert key() != first


def test_a_record_naming_a_path_outside_the_stage_outs_is_never_restored(tmp_path: Path) -> None:
    pipeline = load_pipeline(load_config(project(tmp_path, GOOD)))
    assert pipeline is not None
    prepare, sha = pipeline.stage("prepare"), "a" * 64
    assert _fits(prepare, {"outs": {"feat/x.csv": sha}})
    for outs in (
        {"feat/../../etc/passwd": sha},  # leaves the project
        {"a.py": sha},  # a source file, not an out of the stage
        {"/etc/passwd": sha},
        {"feat/x.csv": "not-a-digest"},
    ):
        assert not _fits(prepare, {"outs": outs}), outs
