"""Model files cross the runner's pipe as regular files only, and are written back only below
their folder: a link, a FIFO or a path into /proc is refused, never followed or waited on."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mlops_ci.errors import InputError
from mlops_ci.runner.files import FilesRefused, model_files, read_files, write_files


def test_a_folder_of_files_travels_by_relative_path(tmp_path: Path) -> None:
    (tmp_path / "m" / "sub").mkdir(parents=True)
    (tmp_path / "m" / "MLmodel").write_bytes(b"flavors: {}")
    (tmp_path / "m" / "sub" / "model.skops").write_bytes(b"\x00\x01")
    assert read_files(tmp_path / "m") == {"MLmodel": b"flavors: {}", "sub/model.skops": b"\x00\x01"}
    assert model_files(tmp_path / "m" / "MLmodel", folder=False) == {"MLmodel": b"flavors: {}"}


def test_a_link_in_a_model_folder_is_refused_not_followed(tmp_path: Path) -> None:
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "notes.txt").symlink_to("/proc/self/environ")
    with pytest.raises(InputError, match="a link in a model folder"):
        read_files(tmp_path / "m")


def test_a_model_path_through_a_link_into_proc_is_refused(tmp_path: Path) -> None:
    (tmp_path / "outputs").symlink_to("/proc/self")
    with pytest.raises(InputError, match="not a model file"):
        model_files(tmp_path / "outputs" / "environ", folder=False)


def test_a_fifo_as_a_model_file_is_refused_at_once(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "model.joblib")
    with pytest.raises(InputError, match="not a regular file"):
        model_files(tmp_path / "model.joblib", folder=False)


@pytest.mark.parametrize("name", ["/etc/evil", "../evil", "a/../../evil", "", "a\0b"])
def test_a_name_that_leaves_the_folder_is_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(FilesRefused):
        write_files(tmp_path, {name: b"x"}, "the folder")
    assert list(tmp_path.iterdir()) == []


def test_an_entry_that_is_not_a_name_and_bytes_is_refused(tmp_path: Path) -> None:
    with pytest.raises(FilesRefused):
        write_files(tmp_path, {"a": "text"}, "the folder")  # type: ignore[dict-item]
    with pytest.raises(FilesRefused, match="cannot be written"):
        write_files(tmp_path, {"a": b"1", "a/b": b"2"}, "the folder")


def test_code_paths_travel_under_their_own_names_without_bytecode(tmp_path: Path) -> None:
    from mlops_ci.runner.files import code_files

    (tmp_path / "rules.py").write_text("X = 1\n")
    (tmp_path / "lib" / "__pycache__").mkdir(parents=True)
    (tmp_path / "lib" / "__init__.py").write_text("")
    (tmp_path / "lib" / "__pycache__" / "x.pyc").write_bytes(b"\0")
    assert code_files((tmp_path / "rules.py", tmp_path / "lib")) == {
        "rules.py": b"X = 1\n",
        "lib/__init__.py": b"",
    }
