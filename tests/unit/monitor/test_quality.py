"""The join of the input log and the labels on hand-written records: what is joined, and what is
counted instead of guessed (rows without a label, labels without a row, records that are not
one row of one version)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from mlops_ci.errors import InputError
from mlops_ci.monitor.labels import LabelSet
from mlops_ci.monitor.lines import SkippedLines
from mlops_ci.monitor.quality import join, paired, period_seconds, periods, read_log


def record(request: str, row: int | None, version: str, prediction: Any, **extra: Any) -> Any:
    found = {
        "ts": extra.pop("ts", 1000.0),
        "request_id": request,
        "model": "iris",
        "version": version,
        "inputs": {"x": extra.pop("x", 1.0)},
        "prediction": prediction,
        "scores": extra.pop("scores", [0.5, 0.5]),
        **extra,
    }
    if row is not None:
        found["row"] = row
    return found


def write_log(folder: Path, records: list[dict[str, Any]], name: str = "inputs-1.jsonl") -> Path:
    folder.mkdir(exist_ok=True)
    (folder / name).write_text("".join(json.dumps(r) + "\n" for r in records))
    return folder


def labels(**by_key: Any) -> LabelSet:
    """labels(a_0="x", b="y"): request a row 0, request b without a row."""
    found = LabelSet("y")
    for name, value in by_key.items():
        request, _, row = name.partition("_")
        key = (request, int(row) if row else None)
        found.labels[key] = (value, f"labels.csv:{len(found.labels) + 2}")
    return found


def joined_of(tmp_path: Path, records: list[dict[str, Any]], found: LabelSet) -> Any:
    log = read_log(write_log(tmp_path / "log", records), "classification", ("x",), SkippedLines())
    return join(log, found)


def test_primary_and_shadow_rows_join_their_labels_and_the_rest_is_counted(
    tmp_path: Path,
) -> None:
    records = [
        record("a", 0, "1", "setosa"),
        record("a", 1, "1", "virginica"),
        record("a", 0, "2", "setosa", shadow=True),
        record("a", 1, "2", "setosa", shadow=True),
        record("b", 0, "1", "versicolor"),  # no label
    ]
    joined = joined_of(tmp_path, records, labels(a_0="setosa", a_1="virginica", c_0="x"))
    one, two = joined.versions["1"], joined.versions["2"]
    assert one.keys == [("a", 0), ("a", 1)] and one.predicted == ["setosa", "virginica"]
    assert (one.primary, one.shadow, two.primary, two.shadow) == (2, 0, 0, 2)
    assert two.truth == ["setosa", "virginica"] and two.predicted == ["setosa", "setosa"]
    assert joined.counts["unlabelled_rows"] == 1 and joined.counts["unmatched_labels"] == 1
    assert joined.counts["unjoinable_rows"] == 0
    prod_at, cand_at = paired(joined, "1", "2")
    assert [one.keys[i] for i in prod_at] == [two.keys[i] for i in cand_at] == one.keys


def test_a_record_without_row_is_row_0_only_of_a_one_row_request(tmp_path: Path) -> None:
    records = [
        record("single", None, "1", "setosa"),
        record("multi", None, "1", "setosa"),
        record("multi", None, "1", "virginica"),
    ]
    joined = joined_of(tmp_path, records, labels(single_0="setosa", multi_0="setosa"))
    assert joined.versions["1"].keys == [("single", 0)]
    assert joined.counts["unjoinable_rows"] == 2  # which of the two is row 0 is not said
    assert joined.counts["unmatched_labels"] == 1


def test_a_label_without_row_labels_only_a_one_row_request(tmp_path: Path) -> None:
    records = [record("one", 0, "1", "a"), record("two", 0, "1", "a"), record("two", 1, "1", "b")]
    joined = joined_of(tmp_path, records, labels(one="a", two="b"))
    assert joined.versions["1"].keys == [("one", 0)]
    assert joined.counts["unmatched_labels"] == 1 and joined.counts["unlabelled_rows"] == 2


def test_a_label_given_with_and_without_its_row_is_a_duplicate(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"a second label for request 'one' row 0"):
        joined_of(tmp_path, [record("one", 0, "1", "a")], labels(one="a", one_0="b"))


def test_a_request_id_logged_twice_is_unjoinable_not_guessed(tmp_path: Path) -> None:
    records = [
        record("dup", 0, "1", "a"),
        record("dup", 0, "1", "b"),  # a client that reused its x-request-id
        record("canary", 0, "1", "a"),
        record("canary", 0, "3", "b"),  # two primaries for one row
        record("ok", 0, "1", "a"),
    ]
    joined = joined_of(tmp_path, records, labels(dup_0="a", canary_0="a", ok_0="a"))
    assert joined.versions["1"].keys == [("ok", 0)] and "3" not in joined.versions
    assert joined.counts["unjoinable_rows"] == 4
    assert joined.counts["unmatched_labels"] == 2  # dup's and canary's: no single row each
    assert joined.counts["unlabelled_rows"] == 0


def test_answers_are_labels_for_a_classifier_and_the_value_for_a_regressor(
    tmp_path: Path,
) -> None:
    records = [
        record("a", 0, "1", None, scores=[2.5]),
        record("b", 0, "1", None, scores=[0.2, 0.8]),  # a classifier logged no label: no answer
    ]
    folder = write_log(tmp_path / "log", records)
    found = labels(a_0=3.0, b_0=1.0)
    regression = join(read_log(folder, "regression", (), SkippedLines()), found)
    assert regression.versions["1"].predicted == [2.5]
    assert regression.counts["no_answer_rows"] == 1
    classification = join(read_log(folder, "classification", (), SkippedLines()), found)
    assert classification.versions == {} and classification.counts["no_answer_rows"] == 2


def test_parquet_segments_a_torn_line_and_an_open_segment_are_read(tmp_path: Path) -> None:
    folder = tmp_path / "log"
    folder.mkdir()
    pd.DataFrame([record("p", 0, "1", "a")]).to_parquet(folder / "inputs-1.parquet")
    (folder / "inputs-2.jsonl").write_text(json.dumps(record("j", 0, "1", "a")) + "\n{torn\n")
    whole = json.dumps(record("o", 0, "1", "a")) + "\n"
    (folder / "inputs-3.jsonl.open").write_text(whole + whole[:20])  # being written
    skipped = SkippedLines()
    found = read_log(folder, "classification", ("x",), skipped)
    assert sorted(r.request_id for r in found) == ["j", "o", "p"]
    assert found[0].slices == (1.0,)
    assert skipped.count == 1 and skipped.places == [f"{folder / 'inputs-2.jsonl'}:2"]


def test_a_csv_is_not_an_input_log(tmp_path: Path) -> None:
    path = tmp_path / "inputs.csv"
    path.write_text("x\n1\n")
    with pytest.raises(InputError, match="not an input log"):
        read_log(path, "classification", (), SkippedLines())


def test_periods_are_aligned_to_their_length() -> None:
    assert period_seconds("1h") == 3600 and period_seconds("30m") == 1800
    assert period_seconds("2d") == 172_800
    assert periods([3599.0, 3600.0, 10.0, 7300.0], 3600) == {0: [0, 2], 3600: [1], 7200: [3]}
    for bad in ("1x", "0h", "h", "1.5h"):
        with pytest.raises(InputError, match=rf"^--every: '{bad}' is not a duration"):
            period_seconds(bad)


def test_a_reused_request_id_makes_every_answer_of_that_row_unjoinable() -> None:
    from mlops_ci.monitor.labels import LabelSet
    from mlops_ci.monitor.quality import Logged, join

    def logged(version: str, shadow: bool, answer: str) -> Logged:
        return Logged(version, shadow, "dup", 0, 0.0, answer, ())

    # two requests under one id, both answered by v1; v2 shadowed only one of them
    records = [logged("1", False, "a"), logged("1", False, "b"), logged("2", True, "b")]
    labels = LabelSet("species", {("dup", 0): ("b", "labels.csv:2")})
    joined = join(records, labels)
    assert joined.versions == {}, "the label may be of the request v2 did not see"
    assert joined.counts["unjoinable_rows"] == 3 and joined.counts["unmatched_labels"] == 1


def test_the_log_is_read_for_the_labelled_requests_only(tmp_path: Path) -> None:
    import json
    from collections import Counter

    from mlops_ci.monitor.lines import SkippedLines
    from mlops_ci.monitor.quality import read_log

    records = [
        {"request_id": f"r{i}", "row": 0, "version": "1", "prediction": "a", "shadow": shadow}
        for i in range(1000)
        for shadow in (False, True)
    ]
    (tmp_path / "inputs-1.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    counts: Counter[str] = Counter()
    kept = read_log(tmp_path, "classification", (), SkippedLines(), {"r3", "r7"}, counts)
    assert sorted((r.request_id, r.shadow) for r in kept) == [
        ("r3", False), ("r3", True), ("r7", False), ("r7", True),
    ]  # fmt: skip
    assert counts == {"unlabelled_rows": 998}  # each unlabelled row once, not per version
