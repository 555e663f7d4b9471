"""The stage cache: outs restored, identical ones left alone; a blob edited in the cache never
restored; a record whose name is a path never written."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlops_ci.errors import InputError
from mlops_ci.pipeline import cache as cache_module
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


@pytest.mark.parametrize(
    "name", ["/abs/outside", "../../../../outside", "a/b", "a\\b", "..", ".", "", None]
)
def test_a_record_whose_name_is_a_path_is_never_written(tmp_path: Path, name: str) -> None:
    project = tmp_path / "project"
    project.mkdir()
    if name == "/abs/outside":
        name = str(tmp_path / "outside")
    cache = StageCache(project / ".mlops" / "cache")
    with pytest.raises(InputError, match="is not a stage name; refusing to write it"):
        cache.save({"name": name, "key": "a" * 64, "outs": {}})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["project"]
    assert not (project / ".mlops").exists()


def test_a_record_whose_key_is_not_a_sha256_is_never_written(tmp_path: Path) -> None:
    cache = StageCache(tmp_path / ".mlops" / "cache")
    with pytest.raises(InputError, match="not a sha256; refusing to write it"):
        cache.save({"name": "prepare", "key": "../../../x", "outs": {}})
    assert not (tmp_path / ".mlops").exists()
    cache.save({"name": "prepare", "key": "a" * 64, "outs": {}})
    assert cache.record("prepare", "a" * 64) == {"name": "prepare", "key": "a" * 64, "outs": {}}


def test_a_blob_edited_in_the_cache_is_never_restored(tmp_path: Path) -> None:
    (tmp_path / "feat").mkdir()
    (tmp_path / "feat" / "a.csv").write_text("1\n")
    (tmp_path / "feat" / "b.csv").write_text("2\n")
    manifest = manifest_of(tmp_path, ["feat"])
    cache = StageCache(tmp_path / ".mlops" / "cache")
    cache.store(tmp_path, manifest)
    cache.blob(manifest["feat/b.csv"]).write_text("tampered\n")
    (tmp_path / "feat" / "a.csv").write_text("edited by the user\n")
    with pytest.raises(Exception) as caught:  # noqa: PT011 - CorruptBlobs, named below
        cache.restore(tmp_path, ("feat",), manifest)
    assert isinstance(caught.value, cache_module.CorruptBlobs)
    assert caught.value.paths == ["feat/b.csv"]
    # Checked before anything was written: the work tree as it was, the bad blob gone.
    assert (tmp_path / "feat" / "a.csv").read_text() == "edited by the user\n"
    assert (tmp_path / "feat" / "b.csv").read_text() == "2\n"
    assert not cache.blob(manifest["feat/b.csv"]).exists() and not cache.has(manifest)


def test_corrupt_only_looks_and_store_check_replaces_a_bad_blob(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text("1\n")
    manifest = manifest_of(tmp_path, ["a.csv"])
    cache = StageCache(tmp_path / ".mlops" / "cache")
    cache.store(tmp_path, manifest)
    cache.blob(manifest["a.csv"]).write_text("tampered\n")
    assert cache.corrupt(manifest) == ["a.csv"] and cache.has(manifest)  # a look: nothing removed
    assert cache.store(tmp_path, manifest) == []  # unchecked: a blob there is taken as it is
    assert cache.store(tmp_path, manifest, check=True) == ["a.csv"]
    assert cache.corrupt(manifest) == [] and cache.blob(manifest["a.csv"]).read_text() == "1\n"
