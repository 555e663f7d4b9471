"""The stage cache on disk: files by their sha256 under ``.mlops/cache/files/`` (as DVC's
``.dvc/cache``), and one record per stage run under ``.mlops/cache/stages/NAME/KEY.json``.

A stage's outs are stored once per content; restoring them copies the files back (never a
link: the work tree stays the user's to edit without touching the cache), each checked against
its sha256 before any out is touched: a blob edited in the cache is never restored.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

from mlops_ci.errors import InputError
from mlops_ci.pipeline.spec import STAGE_NAME
from mlops_ci.provenance import sha256_file, walk_files
from mlops_ci.records import read_json, write_json_atomic

Manifest = dict[str, str]  # project-relative POSIX file path -> sha256
_KEY = re.compile(r"[0-9a-f]{64}")


class CorruptBlobs(Exception):
    """Blobs of the cache whose content is not their sha256 (removed from the cache)."""

    def __init__(self, paths: list[str]) -> None:
        super().__init__(", ".join(paths))
        self.paths = paths  # the project paths they were to restore


def manifest_of(root: Path, paths: tuple[str, ...] | list[str]) -> Manifest:
    """sha256 of every file at or under ``paths`` (content, never mtime); absent paths add
    nothing."""
    out: Manifest = {}
    for rel in paths:
        path = root / rel
        if path.is_file():
            out[rel] = sha256_file(path)
        elif path.is_dir():
            for file in sorted(walk_files(path)):
                out[file.relative_to(root).as_posix()] = sha256_file(file)
    return dict(sorted(out.items()))


class StageCache:
    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def blob(self, sha: str) -> Path:
        return self.folder / "files" / sha[:2] / sha[2:]

    def has(self, manifest: Manifest) -> bool:
        return all(self.blob(sha).is_file() for sha in manifest.values())

    def put(self, file: Path, sha: str) -> None:
        """Copy ``file`` in as ``sha`` unless it is there: a temporary name, then a rename, so a
        half-copied blob is never read."""
        target = self.blob(sha)
        if target.is_file():
            return
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
        os.close(fd)
        try:
            shutil.copyfile(file, tmp)
            os.replace(tmp, target)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

    def store(self, root: Path, manifest: Manifest, check: bool = False) -> list[str]:
        """Copy in the files of ``manifest`` (whose content is its sha256); ``check``: a blob
        already there is hashed too and replaced when it does not match. The paths replaced."""
        replaced = []
        for rel, sha in manifest.items():
            if check and self.blob(sha).is_file() and sha256_file(self.blob(sha)) != sha:
                self.blob(sha).unlink()
                replaced.append(rel)
            self.put(root / rel, sha)
        return replaced

    def corrupt(self, manifest: Manifest) -> list[str]:
        """The paths of ``manifest`` whose blob is there but is not its sha256 (read only)."""
        return [
            rel
            for rel, sha in manifest.items()
            if self.blob(sha).is_file() and sha256_file(self.blob(sha)) != sha
        ]

    def restore(self, root: Path, outs: tuple[str, ...], manifest: Manifest) -> bool:
        """Put the outs back as the manifest says; False (and nothing written) when the work
        tree already holds exactly them. Each blob is copied aside and hashed first: one that
        is not its sha256 is removed from the cache and CorruptBlobs raised, the work tree
        untouched."""
        if manifest_of(root, outs) == manifest and all((root / o).exists() for o in outs):
            return False
        self.folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=self.folder, prefix=".restore-") as tmp:
            staged: list[tuple[Path, Path]] = []
            bad: list[str] = []
            for i, (rel, sha) in enumerate(manifest.items()):
                copy = Path(tmp) / str(i)
                shutil.copyfile(self.blob(sha), copy)
                if sha256_file(copy) != sha:
                    self.blob(sha).unlink(missing_ok=True)
                    bad.append(rel)
                staged.append((copy, root / rel))
            if bad:
                raise CorruptBlobs(bad)
            for out in outs:
                remove(root / out)
            for out in outs:  # a folder out with no files is still a folder
                if not any(rel == out for rel in manifest):
                    (root / out).mkdir(parents=True, exist_ok=True)
            for copy, target in staged:
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.move(copy, target)
        return True

    def record_path(self, stage: str, key: str) -> Path:
        return self.folder / "stages" / stage / f"{key}.json"

    def record(self, stage: str, key: str) -> dict[str, Any] | None:
        found = read_json(self.record_path(stage, key))
        return found if isinstance(found, dict) else None

    def last(self, stage: str) -> dict[str, Any] | None:
        """The last record written for the stage (what ``--dry-run`` compares against)."""
        found = read_json(self.folder / "stages" / stage / "last.json")
        return found if isinstance(found, dict) else None

    def set_holder(self, stage: str, key: str, run_id: str) -> None:
        """Note the MLflow run that holds the outs of this record (uploaded with it)."""
        found = self.record(stage, key)
        if found is not None and found.get("holder") != run_id:
            self.save({**found, "name": stage, "key": key, "holder": run_id})

    def save(self, record: dict[str, Any]) -> None:
        """Write the record under its stage's folder. A name that is not a stage name (any path:
        ``/``, ``\\``, ``..``, absolute) or a key that is not a sha256 is refused, nothing
        written."""
        name, key = record.get("name"), record.get("key")
        if not isinstance(name, str) or not STAGE_NAME.fullmatch(name):
            raise InputError(
                f"stage cache: a record names stage {str(name)[:100]!r}, which is not a stage "
                "name; refusing to write it",
                hint="a stage name is letters, digits, _ . and -; rerun with --no-cache",
            )
        if not isinstance(key, str) or not _KEY.fullmatch(key):
            raise InputError(
                f"stage cache: the record of stage '{name}' has key {key!r}, not a sha256; "
                "refusing to write it"
            )
        write_json_atomic(self.record_path(name, key), record)
        write_json_atomic(self.folder / "stages" / name / "last.json", record)


def remove(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.is_dir():
        shutil.rmtree(path)
