"""The stage cache: outs restored, identical ones left alone."""

from __future__ import annotations

from pathlib import Path

from mlops_ci.pipeline.cache import StageCache, manifest_of


def test_the_cache_restores_outs_and_leaves_identical_ones_alone(tmp_path: Path) -> None:
    (tmp_path / "feat" / "sub").mkdir(parents=True)
    (tmp_path / "feat" / "a.csv").write_text("1\n")
    (tmp_path / "feat" / "sub" / "b.csv").write_text("2\n")
    manifest = manifest_of(tmp_path, ["feat"])
    assert list(manifest) == ["feat/a.csv", "feat/sub/b.csv"]
    cache = StageCache(tmp_path / ".mlops" / "cache")
    cache.store(tmp_path, manifest)
    assert cache.has(manifest)
    assert cache.restore(tmp_path, ("feat",), manifest) is False  # already in place
    (tmp_path / "feat" / "a.csv").write_text("changed\n")
    (tmp_path / "feat" / "stray.csv").write_text("3\n")
    assert cache.restore(tmp_path, ("feat",), manifest) is True
    assert manifest_of(tmp_path, ["feat"]) == manifest
