"""The input log joined to labels: which version answered which labelled row, and what it said.

`mlops-ci serve` logs one record per scored row: ``request_id``, ``row`` (its index within the
request), ``version``, ``prediction`` (a classifier's label, else null), ``scores`` (the
probabilities, or a regressor's value) and, for a shadow version that scored the same request
after the primary answered it, ``"shadow": true``. A label names (request_id, row); the join
keys both sides by it, and nothing is guessed:

- a record without ``row`` (written before the log had it) is row 0 only when its version
  logged that request as one row; otherwise it is counted unjoinable;
- a (request, row) logged twice by the primaries (a client reusing an ``x-request-id``), or
  twice by one shadow version, is unjoinable: its label could belong to either;
- a label without ``row`` labels row 0 of a one-row request; on a longer request it is counted
  unmatched, as is a label whose request the log does not hold;
- a logged row without a label is counted unlabelled.

The result holds, per version, the labels and its answers on its labelled rows in one order,
and the primary/shadow pairs of every labelled row, for ``steps/quality`` to score.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlops_ci.errors import InputError
from mlops_ci.extras import require
from mlops_ci.monitor.files import OPEN_SEGMENT, files_of, successors
from mlops_ci.monitor.labels import LabelSet, duplicate
from mlops_ci.monitor.lines import SkippedLines, json_lines

Key = tuple[str, int]  # (request_id, row)


@dataclass(frozen=True)
class QualityConfig:
    """monitor.quality of mlops.yaml (the schema says each key's meaning); typed here, beside
    what reads it, as ``config.types``' MonitorConfig holds it."""

    labels: str | None = None
    every: str = "1h"
    min_rows: int = 100


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}
_DURATION = re.compile(r"([1-9][0-9]*)\s*([smhdw])")


def period_seconds(text: str, where: str = "--every") -> int:
    """``30m``, ``1h``, ``1d``: the length of a period in seconds."""
    found = _DURATION.fullmatch(text.strip())
    if found is None:
        raise InputError(
            f"{where}: '{text}' is not a duration",
            hint="a whole number and a unit: s, m, h, d or w (e.g. 30m, 1h, 1d)",
        )
    return int(found.group(1)) * _UNITS[found.group(2)]


@dataclass(frozen=True)
class Logged:
    """One logged row, as much of it as the join needs."""

    version: str
    shadow: bool
    request_id: str
    row: int | None
    ts: float
    answer: Any  # the label (classification) or the value (regression); None: none logged
    slices: tuple[Any, ...]  # the values of evaluate.slices' columns among its inputs


@dataclass
class Answers:
    """One version's answers on its labelled rows, in one order."""

    keys: list[Key] = field(default_factory=list)
    ts: list[float] = field(default_factory=list)
    truth: list[Any] = field(default_factory=list)
    predicted: list[Any] = field(default_factory=list)
    slices: list[tuple[Any, ...]] = field(default_factory=list)
    primary: int = 0  # of them answered as the primary
    shadow: int = 0  # of them scored as a shadow


@dataclass
class Joined:
    versions: dict[str, Answers]
    # key -> the primary's version and its answer, and each shadow version's answer
    primary: dict[Key, str]
    shadows: dict[Key, dict[str, int]]  # key -> {shadow version: position in its Answers}
    positions: dict[str, dict[Key, int]]  # version -> key -> position in its Answers
    counts: dict[str, int]


def read_log(
    path: Path,
    task: str,
    slices: tuple[str, ...],
    skipped: SkippedLines,
    labelled: set[str] | None = None,
    counts: Counter[str] | None = None,
) -> list[Logged]:
    """The records of the input log at ``path`` (its folder, or one file); with ``labelled``,
    only those of the requests a label names (memory grows with the labels, not the log),
    the primary rows of the others counted in ``counts`` as ``unlabelled_rows``."""
    out: list[Logged] = []
    for listed in files_of(path):
        file = _current(listed)
        if file is None:
            continue
        for number, record in enumerate(_file_records(file, skipped), 1):
            found = _logged(record, task, slices)
            if found is None:
                skipped.add(file, number)  # not a record serve writes
            elif labelled is None or found.request_id in labelled:
                out.append(found)
            elif counts is not None and not found.shadow:
                counts["unlabelled_rows"] += 1
    return out


def _current(file: Path) -> Path | None:
    """``file``, or what serve finished it into since the folder was listed."""
    if file.exists():
        return file
    for name in successors(file.name):
        if file.with_name(name).exists():
            return file.with_name(name)
    return None


def _file_records(file: Path, skipped: SkippedLines) -> Iterator[dict[str, Any]]:
    if file.suffix == ".parquet":
        require("parquet", f"{file}: reading Parquet")
        import pyarrow.parquet as pq

        try:
            yield from pq.read_table(file).to_pylist()
        except (OSError, ValueError) as err:
            raise InputError(f"{file}: cannot be read as Parquet: {err}") from None
    elif file.suffix == ".csv":
        raise InputError(
            f"{file}: not an input log (a CSV has no request ids)",
            hint="--current is the folder `mlops-ci serve` logs to (monitor.log_dir)",
        )
    else:
        yield from json_lines(file, skipped, complete_only=file.name.endswith(OPEN_SEGMENT))


def _logged(record: dict[str, Any], task: str, slices: tuple[str, ...]) -> Logged | None:
    request, version = record.get("request_id"), record.get("version")
    if not isinstance(request, str) or version is None:
        return None
    row = record.get("row")
    if not isinstance(row, int) or isinstance(row, bool) or row < 0:
        row = None
    inputs = record.get("inputs")
    values = inputs if isinstance(inputs, dict) else {}
    ts = record.get("ts")
    return Logged(
        version=str(version),
        shadow=record.get("shadow") is True,
        request_id=request,
        row=row,
        ts=float(ts) if isinstance(ts, (int, float)) else 0.0,
        answer=_answer(record, task),
        slices=tuple(values.get(c) for c in slices),
    )


def _answer(record: dict[str, Any], task: str) -> Any:
    """What the model said, as compare scores it: a classifier's label (accuracy and the F1s are
    of labels, not probabilities); a regressor's value (its one score)."""
    prediction = record.get("prediction")
    if task != "regression":
        return prediction if isinstance(prediction, (str, int, float)) else None
    if isinstance(prediction, (int, float)) and not isinstance(prediction, bool):
        return float(prediction)
    scores = record.get("scores")
    if isinstance(scores, list) and len(scores) == 1 and isinstance(scores[0], (int, float)):
        return float(scores[0])
    return None


def join(logged: list[Logged], labels: LabelSet) -> Joined:
    """The log's rows keyed by (request_id, row), joined to the labels (see the module)."""
    counts: Counter[str] = Counter()
    keyed = _keyed(logged, counts)  # a doubtful key's labels are left unmatched
    primaries: dict[Key, list[Logged]] = defaultdict(list)
    shadow_of: dict[Key, dict[str, Logged]] = defaultdict(dict)
    rows_of: dict[str, set[int]] = defaultdict(set)  # request -> its rows, by any version
    for (version, shadow, key), found in keyed.items():
        rows_of[key[0]].add(key[1])
        if shadow:
            shadow_of[key][version] = found
        else:
            primaries[key].append(found)
    taken = _labels_by_key(labels, rows_of, counts)
    joined = Joined({}, {}, {}, {}, {})
    for key in sorted(set(primaries) | set(shadow_of)):
        answered = primaries.get(key, [])
        shadows = list(shadow_of.get(key, {}).values())
        label = taken.pop(key, None)
        if len(answered) > 1:  # two primaries answered one (request, row): which was labelled?
            counts["unjoinable_rows"] += len(answered) + len(shadows)
            counts["unmatched_labels"] += label is not None
        elif label is None:
            counts["unlabelled_rows"] += 1
        else:
            for found in answered + shadows:
                _place(joined, key, label, found, counts)
    counts["unmatched_labels"] += len(taken)
    counts["labels_without_value"] = labels.empty
    joined.counts = {name: counts[name] for name in COUNTS}
    return joined


# What the join counts and does not use, in the order the report says them.
COUNTS = (
    "unlabelled_rows",  # logged rows no label names
    "unmatched_labels",  # labels naming no logged row (or no single one)
    "unjoinable_rows",  # logged records whose (request, row) is not one row of one version
    "no_answer_rows",  # labelled records without a prediction the metrics can read
    "labels_without_value",  # labels whose target is empty
)


def _keyed(logged: list[Logged], counts: Counter[str]) -> dict[tuple[str, bool, Key], Logged]:
    """Each record under (version, shadow, (request, row)); a record without a row is row 0
    only in a one-row request of its version; a key met twice is unjoinable (each time), and
    so is every other record of that (request, row): which request the label is of is not
    known (a client reused its request id), so no version's answer there is judged."""
    per_request: Counter[tuple[str, bool, str]] = Counter(
        (r.version, r.shadow, r.request_id) for r in logged
    )
    keyed: dict[tuple[str, bool, Key], Logged] = {}
    seen: Counter[tuple[str, bool, Key]] = Counter()
    for r in logged:
        row = r.row
        if row is None:
            if per_request[(r.version, r.shadow, r.request_id)] != 1:
                counts["unjoinable_rows"] += 1
                continue
            row = 0
        name = (r.version, r.shadow, (r.request_id, row))
        seen[name] += 1
        keyed[name] = r
    doubtful: set[Key] = set()
    for name, times in seen.items():
        if times > 1:
            del keyed[name]
            counts["unjoinable_rows"] += times
            doubtful.add(name[2])
    for name in [n for n in keyed if n[2] in doubtful]:
        del keyed[name]
        counts["unjoinable_rows"] += 1
    return keyed


def _labels_by_key(
    labels: LabelSet, rows_of: dict[str, set[int]], counts: Counter[str]
) -> dict[Key, Any]:
    """The labels under (request, row); a label without a row is row 0 of a one-row request."""
    out: dict[Key, Any] = {}
    places: dict[Key, str] = {}
    for (request, row), (value, place) in labels.labels.items():
        if row is None:
            rows = rows_of.get(request, set())
            if rows != {0}:
                counts["unmatched_labels"] += 1  # no such request, or which row is not said
                continue
            row = 0
        key = (request, row)
        if key in places:
            raise duplicate(key, place, places[key])
        out[key], places[key] = value, place
    return out


def _place(joined: Joined, key: Key, label: Any, found: Logged, counts: Counter[str]) -> None:
    if found.answer is None:
        counts["no_answer_rows"] += 1
        return
    answers = joined.versions.setdefault(found.version, Answers())
    position = len(answers.keys)
    answers.keys.append(key)
    answers.ts.append(found.ts)
    answers.truth.append(label)
    answers.predicted.append(found.answer)
    answers.slices.append(found.slices)
    joined.positions.setdefault(found.version, {})[key] = position
    if found.shadow:
        answers.shadow += 1
        joined.shadows.setdefault(key, {})[found.version] = position
    else:
        answers.primary += 1
        joined.primary[key] = found.version


def paired(joined: Joined, production: str, candidate: str) -> tuple[list[int], list[int]]:
    """Positions, in production's and in the candidate's answers, of the labelled rows the
    production version answered as the primary and the candidate scored as its shadow."""
    prod_at: list[int] = []
    cand_at: list[int] = []
    positions = joined.positions.get(production, {})
    for key, shadows in joined.shadows.items():
        if candidate in shadows and joined.primary.get(key) == production:
            prod_at.append(positions[key])
            cand_at.append(shadows[candidate])
    return prod_at, cand_at


def periods(ts: list[float], every: int) -> dict[int, list[int]]:
    """Positions by the start (UTC seconds, a multiple of ``every``) of their period."""
    out: dict[int, list[int]] = defaultdict(list)
    for i, t in enumerate(ts):
        out[int(t // every) * every].append(i)
    return dict(sorted(out.items()))
