"""Label files: the three formats read alike, the row optional, empty labels counted, and every
refusal one line naming the file and the line (or table row)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from mlops_ci.errors import InputError
from mlops_ci.monitor.labels import read_labels


def _write(path: Path, rows: list[dict[str, object]]) -> Path:
    if path.suffix == ".csv":
        pd.DataFrame(rows).to_csv(path, index=False)
    elif path.suffix == ".parquet":
        pd.DataFrame(rows).to_parquet(path)
    else:
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


ROWS: list[dict[str, object]] = [
    {"request_id": "a", "row": 0, "species": "setosa"},
    {"request_id": "a", "row": 1, "species": "virginica"},
    {"request_id": "b", "row": 0, "species": "versicolor"},
]


@pytest.mark.parametrize("suffix", [".csv", ".parquet", ".jsonl"])
def test_every_format_reads_the_same_labels(tmp_path: Path, suffix: str) -> None:
    found = read_labels(_write(tmp_path / f"labels{suffix}", ROWS), "species", "classification")
    assert {k: v for k, (v, _) in found.labels.items()} == {
        ("a", 0): "setosa",
        ("a", 1): "virginica",
        ("b", 0): "versicolor",
    }


def test_a_folder_of_files_and_labels_without_row_or_value(tmp_path: Path) -> None:
    folder = tmp_path / "labels"
    folder.mkdir()
    _write(folder / "1.csv", [{"request_id": "a", "species": "setosa"}])
    (folder / "2.jsonl").write_text(
        '{"request_id": "b", "species": null}\n\n{"request_id": "c", "species": "x"}\n'
    )
    found = read_labels(folder, "species", "classification")
    assert set(found.labels) == {("a", None), ("c", None)}
    assert found.empty == 1 and len(found.files) == 2


def test_a_regression_target_is_a_number(tmp_path: Path) -> None:
    path = _write(tmp_path / "y.csv", [{"request_id": "a", "y": "2.5"}])
    assert read_labels(path, "y", "regression").labels[("a", None)][0] == 2.5
    bad = _write(tmp_path / "bad.csv", [{"request_id": "a", "y": "high"}])
    with pytest.raises(InputError, match=rf"^{bad}:2: y must be a number"):
        read_labels(bad, "y", "regression")


def test_a_missing_target_column_names_the_file_and_the_column(tmp_path: Path) -> None:
    path = _write(tmp_path / "labels.csv", [{"request_id": "a", "label": "x"}])
    with pytest.raises(InputError) as caught:
        read_labels(path, "species", "classification")
    assert str(caught.value) == f"{path}: no column 'species' (evaluate.target)"
    lines = tmp_path / "labels.jsonl"
    lines.write_text('{"request_id": "a", "species": "x"}\n{"request_id": "b"}\n')
    with pytest.raises(InputError, match=rf"^{lines}:2: no column 'species'"):
        read_labels(lines, "species", "classification")


@pytest.mark.parametrize(
    ("suffix", "first", "second"),
    [(".csv", ":3", ":4"), (".jsonl", ":2", ":3"), (".parquet", ": table row 2", ": table row 3")],
)
def test_a_second_label_for_one_row_is_refused_with_both_places(
    tmp_path: Path, suffix: str, first: str, second: str
) -> None:
    rows = [*ROWS[:2], {"request_id": "a", "row": 1, "species": "setosa"}]
    path = _write(tmp_path / f"labels{suffix}", rows)
    with pytest.raises(InputError) as caught:
        read_labels(path, "species", "classification")
    assert str(caught.value) == (
        f"{path}{second}: a second label for request 'a' row 1 (the first is at {path}{first})"
    )


@pytest.mark.parametrize(
    ("line", "said"),
    [
        ('{"request_id": "a", "row": -1, "species": "x"}', "row must be a whole number from 0"),
        ('{"request_id": "a", "row": 1.5, "species": "x"}', "row must be a whole number from 0"),
        ('{"request_id": "", "species": "x"}', "request_id is empty or not a text"),
        ('{"request_id": "a", "species": ["x"]}', "species must be one value"),
        ("[1, 2]", "not a JSON object"),
    ],
)
def test_bad_lines_are_named(tmp_path: Path, line: str, said: str) -> None:
    path = tmp_path / "labels.jsonl"
    path.write_text('{"request_id": "z", "species": "x"}\n' + line + "\n")
    with pytest.raises(InputError) as caught:
        read_labels(path, "species", "classification")
    assert str(caught.value).startswith(f"{path}:2: {said}")
    assert "\n" not in str(caught.value)


def test_a_file_of_another_kind_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "labels.txt"
    path.write_text("request_id,species\n")
    with pytest.raises(InputError, match="labels must be a .csv, .parquet or .jsonl file"):
        read_labels(path, "species", "classification")
