"""A model's files as they cross the pipe: read as regular files only (a link is refused,
never followed), written back only below their folder."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from mlops_ci.errors import InputError, MlopsError


class FilesRefused(MlopsError):
    """A file name from the other side that would leave its folder."""


def model_files(path: Path, folder: bool) -> dict[str, bytes]:
    """The model file, or every file of the model folder, by relative path."""
    return read_files(path) if folder else {path.name: _regular(path)}


def read_files(path: Path) -> dict[str, bytes]:
    """A folder's files by relative path, regular files only: a link or a device in it is
    refused, never followed (it could name this process's ``/proc/self/environ``)."""
    found: dict[str, bytes] = {}
    for root, dirs, names in os.walk(path, followlinks=False):
        for name in [*dirs, *names]:
            entry = Path(root) / name
            if entry.is_symlink():
                raise InputError(f"{entry}: a link in a model folder; only files are loaded")
        for name in names:
            entry = Path(root) / name
            found[entry.relative_to(path).as_posix()] = _regular(entry)
    return found


def _regular(path: Path) -> bytes:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise InputError(f"{path}: not a regular file; a model is loaded from files only")
        with os.fdopen(fd, "rb") as fh:
            fd = -1
            return fh.read()
    finally:
        if fd >= 0:
            os.close(fd)


def write_files(dest: Path, files: dict[str, bytes], where: str) -> None:
    """``files`` (relative path → bytes) written under ``dest``; a path that would leave it
    (absolute, ``..``) is refused naming ``where``."""
    for name, data in files.items():
        rel = Path(name)
        if rel.is_absolute() or ".." in rel.parts or not rel.parts:
            raise FilesRefused(f"{where}: the file name {name!r} leaves its folder")
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(target, "xb") as fh:
            fh.write(data)
