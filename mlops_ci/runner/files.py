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


def code_files(paths: tuple[Path, ...]) -> dict[str, bytes]:
    """The files of ``model.code_paths`` (a module file, or a package folder) by the path
    they take in the model's ``code/`` folder: each under its own name, as MLflow copies
    them."""
    found: dict[str, bytes] = {}
    for path in paths:
        if path.is_dir():
            found.update({f"{path.name}/{k}": v for k, v in read_files(path).items() if _kept(k)})
        else:
            found[path.name] = _regular(path)
    return found


def _kept(name: str) -> bool:
    return "__pycache__" not in name.split("/")


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


# Where no model file lives: a link on the way to one (``outputs -> /proc/self``) would hand
# this process's own environment or memory to the model.
_SYSTEM = (Path("/proc"), Path("/sys"), Path("/dev"))


def _regular(path: Path) -> bytes:
    real = path.resolve()
    if any(real.is_relative_to(top) for top in _SYSTEM):
        raise InputError(f"{path}: leads to {real}, not a model file")
    try:  # O_NONBLOCK: a FIFO planted as a model file answers at once instead of hanging
        fd = os.open(real, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as err:
        raise InputError(f"{path}: cannot be read: {err.strerror}") from None
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
        if not isinstance(name, str) or not isinstance(data, bytes) or "\0" in name:
            raise FilesRefused(f"{where}: a file entry that is not a name and its bytes")
        rel = Path(name)
        if rel.is_absolute() or ".." in rel.parts or not rel.parts:
            raise FilesRefused(f"{where}: the file name {name!r} leaves its folder")
        target = dest / rel
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            with open(target, "xb") as fh:
                fh.write(data)
        except OSError as err:
            raise FilesRefused(f"{where}: {name!r} cannot be written: {err.strerror}") from None
