"""Array files read in bounded memory: members of an .npz stored as they are mapped in place,
compressed ones inflated once into the cache and mapped from there; the values are numpy's own;
a pickle, a truncated file or a stray member is bad input naming it."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np
import pytest

from mlops_ci.errors import InputError
from mlops_ci.evaluation.arrays import read_arrays

pytestmark = pytest.mark.timeout(60)

RNG = np.random.default_rng(7)
ARRAYS = {
    "pixels": RNG.random((5, 3, 4, 4), dtype=np.float32),
    "input_ids": RNG.integers(0, 1000, (5, 7)),
    "attention_mask": RNG.random((5, 7)) > 0.3,
    "label": np.arange(5),
    "fortran": np.asfortranarray(RNG.random((3, 4))),
    "empty": np.zeros((0, 4), dtype=np.float32),
}


@pytest.mark.parametrize("save", [np.savez, np.savez_compressed], ids=["stored", "compressed"])
def test_every_array_reads_back_as_numpy_saved_it_and_mapped(tmp_path: Path, save) -> None:
    path = tmp_path / "test.npz"
    save(path, **ARRAYS)
    found = read_arrays(path, tmp_path / "cache")
    assert set(found) == set(ARRAYS)
    for name, want in ARRAYS.items():
        got = found[name]
        assert got.dtype == want.dtype and got.shape == want.shape, name
        assert np.array_equal(got, want), name
        if want.size:
            assert isinstance(got, np.memmap), name  # not read whole into memory
    inflated = list((tmp_path / "cache").glob("*.npy")) if (tmp_path / "cache").exists() else []
    assert len(inflated) == (len(ARRAYS) if save is np.savez_compressed else 0)


def test_a_compressed_member_is_inflated_once_per_version_of_the_file(tmp_path: Path) -> None:
    path, cache = tmp_path / "test.npz", tmp_path / "cache"
    np.savez_compressed(path, x=np.arange(10.0))
    read_arrays(path, cache)
    first = {p: p.stat().st_mtime_ns for p in cache.glob("*.npy")}
    read_arrays(path, cache)
    assert {p: p.stat().st_mtime_ns for p in cache.glob("*.npy")} == first
    np.savez_compressed(path, x=np.arange(12.0))  # a new version: read anew
    assert read_arrays(path, cache)["x"].shape == (12,)


def test_a_single_npy_is_one_array_named_by_its_stem(tmp_path: Path) -> None:
    np.save(tmp_path / "images.npy", ARRAYS["pixels"])
    found = read_arrays(tmp_path / "images.npy", tmp_path / "cache")
    assert list(found) == ["images"] and np.array_equal(found["images"], ARRAYS["pixels"])


def test_bad_files_are_bad_input_naming_the_file_and_array(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    pickled = tmp_path / "objects.npz"
    np.savez(pickled, x=np.array([{"a": 1}, None], dtype=object))
    with pytest.raises(InputError, match=r"objects.npz: array 'x': holds Python objects"):
        read_arrays(pickled, cache)
    whole = tmp_path / "whole.npy"
    np.save(whole, np.arange(1000.0))
    cut = tmp_path / "cut.npy"
    cut.write_bytes(whole.read_bytes()[:-80])
    with pytest.raises(InputError, match=r"cut.npy: .*shorter than its header says"):
        read_arrays(cut, cache)
    stray = tmp_path / "stray.npz"
    with zipfile.ZipFile(stray, "w") as z:
        z.writestr("notes.txt", "hello")
    with pytest.raises(InputError, match=r"stray.npz: member 'notes.txt' is not an .npy"):
        read_arrays(stray, cache)
    not_zip = tmp_path / "plain.npz"
    not_zip.write_text("x")
    with pytest.raises(InputError, match=r"plain.npz: not a readable .npz"):
        read_arrays(not_zip, cache)
    with pytest.raises(InputError, match=r"data.csv: not an array file"):
        (tmp_path / "data.csv").write_text("a\n1\n")
        read_arrays(tmp_path / "data.csv", cache)
    with pytest.raises(InputError, match=r"nope.npz: no such file"):
        read_arrays(tmp_path / "nope.npz", cache)


def _with_header(path: Path, shape: tuple[int, ...]) -> None:
    """A one-member .npz whose .npy header declares ``shape`` over 64 bytes of data."""
    import io

    head = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        head, {"descr": "<f4", "fortran_order": False, "shape": shape}
    )
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("x.npy", head.getvalue() + bytes(64))


@pytest.mark.parametrize(
    ("shape", "message"),
    [
        ((-5, 12), r"its header declares a negative size \[-5, 12\]"),
        ((2**40, 2**40, 2**40), r"the file is shorter than its header says"),
    ],
)
def test_a_header_declaring_an_impossible_shape_is_bad_input(
    tmp_path: Path, shape: tuple[int, ...], message: str
) -> None:
    _with_header(tmp_path / "bad.npz", shape)
    with pytest.raises(InputError, match=r"bad.npz: array 'x': " + message):
        read_arrays(tmp_path / "bad.npz", tmp_path / "cache")


def test_an_inflated_member_replaces_its_earlier_version_in_the_cache(tmp_path: Path) -> None:
    path, cache = tmp_path / "test.npz", tmp_path / "cache"
    for n in (10, 11, 12):
        np.savez_compressed(path, x=np.arange(float(n)), y=np.zeros(n))
        os.utime(path, ns=(n * 10**9, n * 10**9))  # a new version each time
        assert read_arrays(path, cache)["x"].shape == (n,)
    assert len(list(cache.glob("*.npy"))) == 2  # x and y, of the last version only
