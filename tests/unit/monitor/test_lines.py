"""JSON lines: a line that is not a JSON object is skipped, counted and named, never the end of
its file; blank lines are nothing; a line being appended is not read."""

from __future__ import annotations

from pathlib import Path

from mlops_ci.monitor.lines import SkippedLines, json_lines


def test_bad_lines_are_skipped_counted_and_named(tmp_path: Path) -> None:
    log = tmp_path / "inputs-1.jsonl"
    log.write_bytes(b'{"a": 1}\n{"a": 2, "b\n\n[1, 2]\n{"a": 3}{"a": 4}\n{"a": 5}\n')
    skipped = SkippedLines()
    assert [r["a"] for r in json_lines(log, skipped)] == [1, 5]
    assert skipped.count == 3 and skipped.places == [f"{log}:2", f"{log}:4", f"{log}:5"]
    assert skipped.summary() == (
        f"skipped 3 lines that are not valid JSON objects: {log}:2, {log}:4, {log}:5"
    )


def test_the_summary_names_the_first_five(tmp_path: Path) -> None:
    skipped = SkippedLines()
    assert skipped.summary() is None
    skipped.add(tmp_path / "x.jsonl", 9)
    assert (
        skipped.summary()
        == f"skipped 1 line that is not a valid JSON object in {tmp_path}/x.jsonl:9"
    )
    for n in range(7):
        skipped.add(tmp_path / "y.jsonl", n + 1)
    assert skipped.count == 8 and len(skipped.places) == 5
    summary = skipped.summary()
    assert summary is not None and summary.endswith("y.jsonl:4 and 3 more")


def test_a_line_being_appended_is_not_read(tmp_path: Path) -> None:
    segment = tmp_path / "inputs-1.jsonl.open"
    segment.write_bytes(b'{"a": 1}\n{"a": 2}')
    skipped = SkippedLines()
    assert [r["a"] for r in json_lines(segment, skipped, complete_only=True)] == [1]
    assert [r["a"] for r in json_lines(segment, skipped)] == [1, 2]
    assert skipped.count == 0
