"""JSON lines read one whole line at a time, a bad line skipped and counted.

A line of the input log can be torn: a writer killed mid-line, or (before the log cut failed
writes back) a full disk that left half a line with the next batch appended after it. Such a
line costs itself, not its file: every reader skips it, counts it and names where it was, so
drift still reads the thousands of good rows around it and says what it left out. Without
pandas, so the service's own reader (``serve/inputlog.py``) uses it too.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

NAMED = 5  # places named in the summary; the rest are counted


@dataclass
class SkippedLines:
    """The lines skipped so far, over every file read with it: how many, and where (``FILE:LINE``,
    the first ``NAMED``)."""

    count: int = 0
    places: list[str] = field(default_factory=list)

    def add(self, path: Path, number: int) -> None:
        self.count += 1
        if len(self.places) < NAMED:
            self.places.append(f"{path}:{number}")

    def summary(self) -> str | None:
        """One line for the output, or None when nothing was skipped."""
        if not self.count:
            return None
        if self.count == 1:
            return f"skipped 1 line that is not a valid JSON object in {self.places[0]}"
        more = self.count - len(self.places)
        places = ", ".join(self.places) + (f" and {more} more" if more else "")
        return f"skipped {self.count} lines that are not valid JSON objects: {places}"


def json_lines(
    path: Path, skipped: SkippedLines, complete_only: bool = False
) -> Iterator[dict[str, Any]]:
    """The JSON objects of ``path``, one a line; blank lines ignored, any other line that is not
    a JSON object skipped into ``skipped``. ``complete_only``: stop at a last line without its
    newline (a writer is appending it right now)."""
    with open(path, "rb") as fh:
        for number, line in enumerate(fh, 1):
            if complete_only and not line.endswith(b"\n"):
                return
            if not line.strip():
                continue
            try:
                record = orjson.loads(line)
            except orjson.JSONDecodeError:
                record = None
            if isinstance(record, dict):
                yield record
            else:
                skipped.add(path, number)
