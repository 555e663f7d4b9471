"""Score one task: read its slice, turn the features into a float32 matrix, score, write.

Runs in whichever process the engine chose (a pool worker, a Dask worker); the model is loaded
once per process (``_model``) and reused for every task it runs. Rows whose features are not
finite numbers, or that the model cannot score, go to the task's rejects file with the error;
the other rows go to its part file. Both are written to a temporary name and renamed, rejects
first: a part file that exists is a finished task, which is how a job resumes.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mlops_ci.batch.plan import Task, read_task

LOADS: list[int] = []  # pids that loaded a model in this process (one entry per load)


@dataclass(frozen=True)
class Job:
    model_dir: str
    features: tuple[str, ...]
    id_columns: tuple[str, ...]  # carried from input to output rows
    parts: str  # folder of part-NNNNNN.parquet and rejects-NNNNNN.parquet
    threads: int = 1


@dataclass(frozen=True)
class TaskResult:
    index: int
    rows: int
    scored: int
    rejected: int
    seconds: float
    pid: int
    model_loads: int  # models this process had loaded when it finished the task


def part_path(parts: str | Path, index: int) -> Path:
    return Path(parts) / f"part-{index:06d}.parquet"


def rejects_path(parts: str | Path, index: int) -> Path:
    return Path(parts) / f"rejects-{index:06d}.parquet"


@lru_cache(maxsize=4)
def _model(model_dir: str, threads: int) -> Any:
    from mlops_ci.serve.model import LoadedModel, read_spec

    LOADS.append(os.getpid())
    return LoadedModel(read_spec(Path(model_dir)), threads)


def score_task(task: Task, job: Job) -> TaskResult:
    started = time.perf_counter()
    frame = read_task(task)
    model = _model(job.model_dir, job.threads)
    x, errors = features_matrix(frame, job.features)
    ok = errors.isna().to_numpy()
    labels, scores = _predict(model, x[ok], errors, np.flatnonzero(ok))
    ok = errors.isna().to_numpy()  # scoring may have rejected rows too
    out = frame.loc[:, list(job.id_columns)].copy()
    out = out[ok].reset_index(drop=True)
    if labels is not None:
        out["prediction"] = labels
        out["probability"] = scores.max(axis=1)
    else:
        out["prediction"] = scores[:, 0]
    rejected = frame[~ok].astype(str).assign(error=errors[~ok].to_numpy())
    if len(rejected):
        _write(rejected.reset_index(drop=True), rejects_path(job.parts, task.index))
    _write(out, part_path(job.parts, task.index))
    return TaskResult(
        task.index,
        len(frame),
        len(out),
        len(rejected),
        time.perf_counter() - started,
        os.getpid(),
        len(LOADS),
    )


def features_matrix(frame: pd.DataFrame, features: tuple[str, ...]) -> tuple[Any, pd.Series]:
    """float32 [rows, features], and per row an error message (NA where the row is fine)."""
    errors = pd.Series(pd.NA, index=frame.index, dtype="object")
    columns = []
    for name in features:
        raw = frame[name]
        values = pd.to_numeric(raw, errors="coerce").astype("float64")
        bad = ~np.isfinite(values.to_numpy())
        if bad.any():
            first = errors.isna() & bad
            text = raw[first].astype(str)
            errors[first] = [
                f"{name}: missing"
                if t.strip() in ("", "nan", "None", "<NA>")
                else f"{name}: {t[:40]!r} is not a finite number"
                for t in text
            ]
        columns.append(values.fillna(0.0).to_numpy())
    x = np.ascontiguousarray(np.column_stack(columns), dtype=np.float32)
    too_big = ~np.isfinite(x).all(axis=1) & errors.isna().to_numpy()
    errors[too_big] = "a value is beyond the float32 range"
    return x, errors


def _predict(model: Any, x: Any, errors: pd.Series, rows: Any) -> tuple[Any, Any]:
    """Score ``x``; if the batch fails, score row by row and reject the rows that fail."""
    if not len(x):
        return _empty(model)
    try:
        out = model.predict(x)
        return out.labels, out.scores
    except Exception:  # the model's own error; find the rows that cause it
        labels, scores, keep = [], [], []
        for i, row in enumerate(x):
            try:
                one = model.predict(row[None, :])
            except Exception as err:
                errors.iloc[rows[i]] = f"scoring failed: {str(err).splitlines()[0][:200]}"
                continue
            keep.append(i)
            scores.append(one.scores[0])
            if one.labels is not None:
                labels.append(one.labels[0])
        if not keep:
            return _empty(model)
        return (np.asarray(labels) if labels else None), np.vstack(scores)


def _empty(model: Any) -> tuple[Any, Any]:
    width = 2 if model.is_classifier else 1
    labels = np.empty(0, dtype=object) if model.is_classifier else None
    return labels, np.empty((0, width))


def _write(frame: pd.DataFrame, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    frame.to_parquet(tmp, index=False)
    os.replace(tmp, path)
