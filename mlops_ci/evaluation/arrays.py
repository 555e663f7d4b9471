"""Arrays of a tensor model's evaluation data or batch input, read in bounded memory (issue 43).

A ``.npz`` holds one array per input name plus the target (and any metadata to slice by); a
``.npy`` one array. numpy's own ``np.load`` reads an ``.npz`` member whole into memory; an
image set is larger than memory soon enough. Here a member stored uncompressed (``np.savez``)
is memory-mapped where it lies inside the zip; one compressed (``np.savez_compressed``) is
inflated once, streaming, into a ``.npy`` file under ``cache`` and mapped from there (reused
while the archive's size and mtime are unchanged; the member's earlier versions are removed,
and one that would not fit on the disk with room to spare is refused). Pickled object arrays
are refused: reading one would run code from the file.
"""

from __future__ import annotations

import hashlib
import math
import shutil
import struct
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from mlops_ci.errors import InputError

_LOCAL_HEADER = struct.Struct("<4sHHHHHIIIHH")  # a zip member's local file header
_LOCAL_MAGIC = b"PK\x03\x04"
_CHUNK = 1 << 20
_MARGIN = 256 << 20  # free space an inflated member leaves on its disk


def read_arrays(path: Path, cache: Path, where: str | None = None) -> dict[str, npt.NDArray[Any]]:
    """Every array of ``path`` (``.npz``: by member name without ``.npy``; ``.npy``: under the
    file's stem), memory-mapped read-only. ``where`` names the file in errors."""
    where = where or str(path)
    if not path.is_file():
        raise InputError(f"{where}: no such file")
    if path.suffix == ".npy":
        return {path.stem: _mapped(path, 0, where)}
    if path.suffix != ".npz":
        raise InputError(f"{where}: not an array file (.npz or .npy)")
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as err:
        raise InputError(f"{where}: not a readable .npz ({err})") from None
    found: dict[str, npt.NDArray[Any]] = {}
    with archive:
        for info in archive.infolist():
            if info.is_dir():
                continue
            if not info.filename.endswith(".npy"):
                raise InputError(f"{where}: member '{info.filename}' is not an .npy array")
            name = info.filename[: -len(".npy")]
            at = f"{where}: array '{name}'"
            if info.compress_type == zipfile.ZIP_STORED:
                found[name] = _mapped(path, _data_offset(path, info, at), at, info.file_size)
            else:
                found[name] = _mapped(_inflated(archive, info, path, cache, at), 0, at)
    if not found:
        raise InputError(f"{where}: holds no arrays")
    return found


def _data_offset(path: Path, info: zipfile.ZipInfo, at: str) -> int:
    """Where a stored member's bytes begin: after its local header, whose extra field may
    differ in length from the central directory's."""
    with path.open("rb") as fh:
        fh.seek(info.header_offset)
        head = fh.read(_LOCAL_HEADER.size)
    if len(head) != _LOCAL_HEADER.size or head[:4] != _LOCAL_MAGIC:
        raise InputError(f"{at}: the archive's member header is damaged")
    fields = _LOCAL_HEADER.unpack(head)
    return int(info.header_offset + _LOCAL_HEADER.size + fields[9] + fields[10])


def _inflated(
    archive: zipfile.ZipFile, info: zipfile.ZipInfo, path: Path, cache: Path, at: str
) -> Path:
    """A compressed member inflated into ``cache``, once per version of the archive."""
    stat = path.stat()
    member = _digest(f"{path.resolve()}|{info.filename}")
    target = cache / f"{member}-{_digest(f'{stat.st_size}|{stat.st_mtime_ns}|{info.CRC}')}.npy"
    if target.is_file() and target.stat().st_size == info.file_size:
        return target
    cache.mkdir(parents=True, exist_ok=True)
    for older in cache.glob(f"{member}-*"):  # an earlier version of this member
        older.unlink(missing_ok=True)
    free = shutil.disk_usage(cache).free
    if info.file_size > free - _MARGIN:
        raise InputError(
            f"{at}: inflates to {info.file_size:,} bytes; {cache} has {free:,} free",
            hint="save it with np.savez (not compressed): it is then read where it lies",
        )
    partial = target.with_suffix(".part")
    try:
        with archive.open(info) as src, partial.open("wb") as dst:
            shutil.copyfileobj(src, dst, _CHUNK)
    except (zipfile.BadZipFile, OSError, EOFError) as err:
        partial.unlink(missing_ok=True)
        raise InputError(f"{at}: cannot be read ({err})") from None
    partial.replace(target)
    return target


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _mapped(path: Path, offset: int, at: str, length: int | None = None) -> npt.NDArray[Any]:
    """The .npy array at ``offset`` of ``path`` (``length`` bytes of it, or to the end),
    memory-mapped: nothing is read but its header."""
    fmt = np.lib.format
    with path.open("rb") as fh:
        fh.seek(offset)
        try:
            version = fmt.read_magic(fh)
            if version == (1, 0):
                shape, fortran, dtype = fmt.read_array_header_1_0(fh)
            else:
                shape, fortran, dtype = fmt.read_array_header_2_0(fh)
        except ValueError as err:
            raise InputError(f"{at}: not a valid .npy array ({err})") from None
        start = fh.tell()
        end = fh.seek(0, 2) if length is None else offset + length
    if dtype.hasobject:
        raise InputError(f"{at}: holds Python objects (a pickle); save numbers or bools")
    if any(d < 0 for d in shape):
        raise InputError(f"{at}: its header declares a negative size {list(shape)}")
    need = math.prod(shape) * dtype.itemsize  # Python ints: a huge shape does not wrap
    if start + need > end:
        raise InputError(f"{at}: the file is shorter than its header says (truncated?)")
    if need == 0:
        return np.zeros(shape, dtype=dtype)
    mapped: npt.NDArray[Any] = np.memmap(
        path, dtype=dtype, mode="r", offset=start, shape=tuple(shape), order="F" if fortran else "C"
    )
    return mapped
