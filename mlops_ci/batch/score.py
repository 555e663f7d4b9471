"""Score one task: read its slice, turn the features into a float32 matrix, score, write.

Runs in whichever worker the engine chose (a thread of the local engine, a Dask worker); the
model is loaded once per worker (``_model``) and reused for every task it runs. The path is
Arrow and NumPy only (pandas is not even imported: ``arrays``), so a job starts quickly and a
task costs little beyond the model itself. A native model is loaded in that worker's one model
runner (a child, in the sandbox of ``Job.isolation``), never in the process itself;
``close_models`` stops it.
Rows that did not parse, whose features are not finite numbers, or that the model cannot score
go to the task's rejects file with the error; the other rows go to its part file. Both are
written to a temporary name and renamed, rejects first: a part file that exists is a finished
task, which is how a job resumes.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnxruntime  # noqa: F401  (imported before a fork, so Dask's workers inherit it)
import pyarrow as pa
import pyarrow.parquet as pq

from mlops_ci.batch.arrays import floats, from_numpy, taken
from mlops_ci.batch.plan import Slice, Task, read_task
from mlops_ci.model.values import BOOL, CATEGORY, as_read_csv, parse, refusal
from mlops_ci.packaging import convert

LOADS: list[tuple[str, int]] = []  # (model folder, worker slot) of each load in this process
MISSING = ("", "nan", "none", "null", "<na>")


@dataclass(frozen=True)
class Job:
    model_dir: str
    features: tuple[str, ...]
    id_columns: tuple[str, ...]  # carried from input to output rows
    parts: str  # folder of part-NNNNNN.parquet and rejects-NNNNNN.parquet
    threads: int = 1
    kinds: tuple[str, ...] = ()  # number | string | bool | category per feature; (): numbers
    nullable: tuple[str, ...] = ()  # number columns the model scores when missing
    isolation: str = "auto"  # the sandbox of a native model's runner (as train.isolation)


@dataclass(frozen=True)
class TaskResult:
    index: int
    rows: int
    scored: int
    rejected: int
    seconds: float
    worker: str  # the process id, ".slot" for the local engine's threads (worker_name)
    model_loads: int  # loads of the job's model by this worker when it finished the task


@dataclass
class Features:
    """The model's input for a slice, and which rows are fit to score."""

    x: npt.NDArray[np.float64]  # [rows, features] as read (a bool 1.0/0.0); text is a zero
    ok: npt.NDArray[np.bool_]
    errors: npt.NDArray[np.object_]  # the first error of each rejected row, None elsewhere
    names: tuple[str, ...] = ()
    text: dict[str, npt.NDArray[np.object_]] | None = None  # text and category columns

    def batch(self, rows: Any) -> Any:
        """The model's input for ``rows``: the matrix, or a table where a column is text."""
        if not self.text:
            return self.x[rows]
        return {
            name: self.text[name][rows] if name in self.text else self.x[rows, j]
            for j, name in enumerate(self.names)
        }

    def reject(self, rows: Any, messages: Sequence[str] | str) -> None:
        self.errors[rows] = messages
        self.ok[rows] = False


def part_path(parts: str | Path, index: int) -> Path:
    return Path(parts) / f"part-{index:06d}.parquet"


def rejects_path(parts: str | Path, index: int) -> Path:
    return Path(parts) / f"rejects-{index:06d}.parquet"


_MODELS: dict[tuple[str, int, str, int], Any] = {}  # this process's loaded models
_KEEP = 4  # models kept per worker
_MODELS_LOCK = threading.RLock()
_LOADING: dict[tuple[str, int, str, int], threading.Lock] = {}
_WORKER = threading.local()  # .slot: the local engine's thread number (0: any other thread)


def set_slot(slot: int) -> None:
    """Make the calling thread the local engine's worker ``slot``: it loads its own model
    (its own onnxruntime session, or model runner: a native model scored in one runner
    would score one task at a time)."""
    _WORKER.slot = slot


def fresh_process() -> None:
    """Forget models a forked worker inherited: each process builds its own session and
    starts its own model runner (an inherited runner's pipes are its parent's: not closed)."""
    global _MODELS_LOCK
    _MODELS_LOCK = threading.RLock()  # a lock held by another thread at the fork stays held
    _LOADING.clear()
    _MODELS.clear()
    LOADS.clear()


def close_models() -> None:
    """Stop the model runners of this process's native models (its job is done; a later job
    loads them afresh). ONNX sessions hold no process: they stay for the next job."""
    with _MODELS_LOCK:
        for key in [k for k, m in _MODELS.items() if m.in_runner]:
            _MODELS.pop(key).close()
            while (key[0], key[3]) in LOADS:
                LOADS.remove((key[0], key[3]))


def _model(model_dir: str, threads: int, isolation: str = "auto") -> Any:
    slot = getattr(_WORKER, "slot", 0)
    key = (model_dir, threads, isolation, slot)
    with _MODELS_LOCK:
        loading = _LOADING.setdefault(key, threading.Lock())
    with loading:  # one load per worker (a Dask worker's threads share slot 0: one runner)
        with _MODELS_LOCK:
            found = _MODELS.get(key)
            if found is not None:
                return found
            while len(mine := [k for k in _MODELS if k[3] == slot]) >= _KEEP:
                _MODELS.pop(mine[0]).close()  # the worker's oldest goes, its runner stopped
            LOADS.append((model_dir, slot))
        from mlops_ci.serve.model import LoadedModel, read_spec

        model = LoadedModel(read_spec(Path(model_dir)), threads, isolation)
        with _MODELS_LOCK:  # another worker's load went on meanwhile
            _MODELS[key] = model
        return model


def score_task(task: Task, job: Job) -> TaskResult:
    started = time.perf_counter()
    data = read_task(task)
    table = data.table
    model = _model(job.model_dir, job.threads, job.isolation)
    features = features_matrix(table, job.features, job.kinds, job.nullable)
    labels, scores = _predict(model, features)
    ok = features.ok
    ids = table.select(list(job.id_columns))
    out = ids if ok.all() else ids.filter(from_numpy(ok))
    named = _most_probable(labels, scores, model.spec.classes) if labels is not None else None
    if named is not None:
        out = out.append_column("prediction", named[0])
        out = out.append_column("probability", from_numpy(named[1]))
    elif labels is not None:
        out = out.append_column("prediction", _array(labels))
        if scores.shape[1]:  # a classifier without probabilities has none to give
            chosen = convert.label_probability(labels, scores, model.spec.classes)
            out = out.append_column("probability", from_numpy(chosen))
    else:
        out = out.append_column("prediction", from_numpy(scores[:, 0]))
    rejected = int(len(ok) - ok.sum()) + len(data.malformed)
    if rejected:
        _write(_rejects(data, features), rejects_path(job.parts, task.index))
    _write(out, part_path(job.parts, task.index))
    return TaskResult(
        task.index,
        table.num_rows + len(data.malformed),
        out.num_rows,
        rejected,
        time.perf_counter() - started,
        worker_name(),
        LOADS.count((job.model_dir, getattr(_WORKER, "slot", 0))),
    )


def worker_name() -> str:
    """This process's id, and the local engine's thread slot in it when there is one."""
    slot = getattr(_WORKER, "slot", 0)
    return f"{os.getpid()}" + (f".{slot}" if slot else "")


def features_matrix(
    table: Any,
    features: tuple[str, ...],
    kinds: tuple[str, ...] = (),
    nullable: tuple[str, ...] = (),
) -> Features:
    """[rows, features] numbers from an Arrow table as read (float64; ONNX graphs get them as
    float32, see ``model/features.py``), bools as 1.0/0.0, text and category columns as their
    values; a row with a value that is missing where the column may not be (null, an empty
    cell), not a number, beyond float32, not true or false (a bool) or not text or a number (a
    category) is rejected with the first such column named."""
    rows = table.num_rows
    result = Features(
        np.empty((rows, len(features)), np.float64),
        np.ones(rows, np.bool_),
        np.full(rows, None, dtype=object),
        features,
    )
    for j, name in enumerate(features):
        column = table.column(name)
        if kinds and kinds[j] == "string":
            result.x[:, j] = 0.0
            text = _texts(column, name, result, name in nullable)
            result.text = {**(result.text or {}), name: text}
            continue
        if kinds and kinds[j] in (BOOL, CATEGORY):
            _of_kind(column, kinds[j], name, j, result, name in nullable)
            continue
        values = _floats(column)
        with np.errstate(over="ignore"):
            narrow = values.astype(np.float32)
        bad = ~np.isfinite(narrow)
        if bad.any() and name in nullable:  # missing values stay NaN for the model's imputer
            bad &= ~_missing(column, bad)
        if bad.any():
            first = np.flatnonzero(bad & result.ok)
            texts = column.take(pa.array(first)).to_pylist()
            messages = [_message(name, t, v) for t, v in zip(texts, values[first], strict=True)]
            result.reject(first, messages)
            values[bad] = 0.0
        result.x[:, j] = values
    return result


def _texts(
    column: Any, name: str, result: Features, nullable: bool = False
) -> npt.NDArray[np.object_]:
    """A text column as Python strings; a missing one (null, or an empty cell: CSV cannot tell
    them apart) is None where the column may be missing, else the row is rejected."""
    values = np.array(column.cast(pa.string()).to_pylist(), dtype=object)
    null = np.array([v is None or v == "" for v in values], np.bool_)
    if null.any():
        if not nullable:
            result.reject(np.flatnonzero(null & result.ok), f"{name}: missing")
        values[null] = None
    return values


def _of_kind(column: Any, kind: str, name: str, j: int, result: Features, nullable: bool) -> None:
    """A bool column into the matrix (1.0/0.0), a category column's values beside it, as the
    contract reads them (``model/values.py``); a value it refuses, or a missing one where the
    column may not be, rejects the row."""
    values = column.to_pylist()
    if kind == CATEGORY and pa.types.is_string(column.type):  # CSV text: as compare reads it
        values = as_read_csv(values)
    parsed, bad = parse(kind, (), values)
    missing = np.isnan(parsed) if kind == BOOL else np.array([v is None for v in parsed], bool)
    for refused, says in ((bad, None), (missing & ~bad & (not nullable), "missing")):
        rows = np.flatnonzero(refused & result.ok)
        if len(rows):
            messages = [f"{name}: {says or refusal(kind, values[i])}" for i in rows]
            result.reject(rows, messages)
    if kind == BOOL:
        result.x[:, j] = np.where(bad, 0.0, parsed)
    else:
        result.x[:, j] = 0.0
        result.text = {**(result.text or {}), name: parsed}


def _floats(column: Any) -> npt.NDArray[np.float64]:
    """A column as float64 (NaN where null or not a number): a typed column directly, a text
    column by Arrow's parser, and by Python's only where Arrow's refuses a value."""
    kind = column.type
    if kind == pa.float64():  # as is: a cast, even to its own type, imports pyarrow.compute
        return floats(column)
    if pa.types.is_floating(kind) or pa.types.is_integer(kind) or pa.types.is_boolean(kind):
        return floats(column.cast(pa.float64()))
    is_text = pa.types.is_string(kind) or pa.types.is_large_string(kind)
    text = column if is_text else column.cast(pa.string())
    import pyarrow.compute as pc  # ~45 ms: not on the path of typed columns

    try:
        return floats(pc.cast(text, pa.float64()))
    except pa.ArrowInvalid:  # empty strings, spaces, words: parse value by value
        return np.array([_parse(t) for t in text.to_pylist()], np.float64)


def _missing(column: Any, candidates: npt.NDArray[np.bool_]) -> npt.NDArray[np.bool_]:
    """Which of the ``candidates`` rows hold a missing value (null, empty, 'nan', ...)."""
    rows = np.flatnonzero(candidates)
    texts = column.take(pa.array(rows)).cast(pa.string()).to_pylist()
    out = np.zeros(len(candidates), np.bool_)
    out[rows] = [t is None or t.strip().lower() in MISSING for t in texts]
    return out


def _parse(text: str | None) -> float:
    if text is None or "_" in text:
        return float("nan")
    try:
        return float(text)
    except ValueError:
        return float("nan")


def _message(name: str, text: Any, value: float) -> str:
    shown = "" if text is None else str(text)
    if np.isfinite(value):
        return f"{name}: {shown[:40]!r} is beyond the float32 range"
    if shown.strip().lower() in MISSING:
        return f"{name}: missing"
    return f"{name}: {shown[:40]!r} is not a finite number"


def _predict(model: Any, features: Features) -> tuple[Any, Any]:
    """Score the rows fit to score; if the batch fails, score row by row and reject the rows
    that fail."""
    rows = np.flatnonzero(features.ok)
    if not len(rows):
        return _empty(model)
    try:
        out = model.predict(features.batch(slice(None) if len(rows) == len(features.ok) else rows))
        return out.labels, out.scores
    except Exception:  # the model's own error; find the rows that cause it
        labels, scores = [], []
        for i in rows:
            try:
                one = model.predict(features.batch(slice(i, i + 1)))
            except Exception as err:
                features.reject(i, f"scoring failed: {str(err).splitlines()[0][:200]}")
                continue
            scores.append(one.scores[0])
            if one.labels is not None:
                labels.append(one.labels[0])
        if not scores:
            return _empty(model)
        return (np.asarray(labels) if labels else None), np.vstack(scores)


def _empty(model: Any) -> tuple[Any, Any]:
    width = 2 if model.is_classifier else 1
    labels = np.empty(0, dtype=object) if model.is_classifier else None
    return labels, np.empty((0, width))


def _most_probable(
    labels: npt.NDArray[Any], scores: npt.NDArray[np.float64], classes: tuple[str, ...]
) -> tuple[Any, npt.NDArray[np.float64]] | None:
    """(the label column, each label's probability) when every row's label (the model's own,
    as text) is the class of its largest probability, else None (``label_probability`` then
    finds each label's column by name). The same values as that way, without turning each
    row's label into text and sorting them: the column of a row's label is the column
    ``classes`` names it at, the one the arg-max points to; the labels are the classes taken
    by that index."""
    rows, width = scores.shape
    if labels.dtype != object or not rows or not width or width > len(classes):
        return None
    columns = {name: j for j, name in enumerate(classes)}  # the last of a repeated name
    named = np.array([columns[name] for name in classes[:width]], np.intp)
    if (named >= width).any():
        return None
    best = scores.argmax(axis=1)
    if not (labels == np.array(classes[:width], dtype=object)[best]).all():
        return None
    return taken(classes[:width], best), scores[np.arange(rows), named[best]]


def _array(labels: Any) -> Any:
    """Class labels as an Arrow column (text labels as strings, even when there are none)."""
    return from_numpy(labels, text=labels.dtype == object or labels.dtype.kind == "U")


def _rejects(data: Slice, features: Features) -> Any:
    """The rejected rows, every input column as text, with the error of each (rows that did
    not parse last, their fields in the columns they would have had)."""
    bad = ~features.ok
    table = data.table.filter(pa.array(bad))
    columns = {}
    for i, name in enumerate(table.column_names):
        unparsed = pa.array([fields[i] for fields, _ in data.malformed], pa.string())
        chunks = [*table.column(name).cast(pa.string()).chunks, unparsed]
        columns[name] = pa.chunked_array(chunks, pa.string())
    errors = [*features.errors[bad], *(error for _, error in data.malformed)]
    columns["error"] = pa.chunked_array([pa.array(errors, pa.string())])
    return pa.table(columns)


def _write(table: Any, path: Path) -> None:
    """Parquet, atomically; dictionary encoding for the predicted labels alone (few values;
    ids and probabilities are mostly unique, where it costs time and saves nothing)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    labels = "prediction" in table.column_names and pa.types.is_string(
        table.schema.field("prediction").type
    )
    pq.write_table(table, tmp, use_dictionary=["prediction"] if labels else False)
    os.replace(tmp, path)
