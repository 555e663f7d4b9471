"""batch-score: score a table far bigger than memory with a packaged model version.

The input (CSV/Parquet, a file or a folder) is cut into tasks (``batch.plan``); tasks run in
this process and processes forked from it (threads where it cannot fork) or on Dask and each
writes its own part file. Output to a folder keeps the parts; output to a ``.parquet`` or
``.csv`` file streams the parts into it at the end (with the rejects beside it as
``NAME.rejects.parquet``). A job that was interrupted resumes: finished parts are kept and
their tasks skipped, as long as the input, cuts and model are unchanged.
A native model is scored in one model runner per worker (``isolation``: its sandbox).
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlops_ci.batch.plan import Task, auto_chunk_rows, forget_reads, plan, read_task, signature
from mlops_ci.batch.score import Job, TaskResult, part_path, rejects_path
from mlops_ci.errors import GateFailed, InputError
from mlops_ci.records import read_json, write_json_atomic
from mlops_ci.serve.model import ModelSpec

JOB_FILE = "_job.json"
LEGACY_CHUNK_ROWS = 100_000  # the fixed size before records named theirs
Progress = Callable[[int, int, int], None]  # (rows done, rows in all, tasks done)


@dataclass
class BatchResult:
    output: str
    rejects: str | None
    engine: str
    tasks: int
    resumed: int  # tasks already finished by an earlier, interrupted run
    rows: int = 0
    scored: int = 0
    rejected: int = 0
    seconds: float = 0.0
    workers: list[str] = field(default_factory=list)
    model_loads: dict[str, int] = field(default_factory=dict)  # worker (pid[.slot]) -> loads

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.seconds if self.seconds else 0.0

    @property
    def reject_rate(self) -> float:
        return self.rejected / self.rows if self.rows else 0.0


def batch_score(
    spec: ModelSpec,
    input_path: Path,
    output: Path,
    engine: str = "local",
    processes: int = 1,
    scheduler: str | None = None,
    chunk_rows: int | None = None,
    id_columns: tuple[str, ...] | None = None,
    max_reject_rate: float = 0.0,
    progress: Progress = lambda *_: None,
    isolation: str = "auto",
) -> BatchResult:
    """Score ``input_path`` into ``output``. ``chunk_rows`` (rows per task) defaults to the size
    an interrupted run of this job recorded, else to ``auto_chunk_rows`` for ``processes``.
    ``isolation`` (auto | required | off, as train.isolation) is the sandbox of a native
    model's runners, one per worker."""
    if spec.tensor_schema is not None:  # issue 43: serve takes them; batch-score, not yet
        raise InputError(
            f"{spec.folder}: {spec.name} v{spec.version} takes tensors "
            f"({spec.tensor_schema.describe()}); batch-score takes a table "
            "model's package so far",
            hint="score arrays with `mlops-ci serve` (v2 infer, binary tensors) for now",
        )
    single = output.suffix in (".parquet", ".csv")
    parts = output.with_name(output.name + ".parts") if single else output
    if chunk_rows is None:
        chunk_rows = _recorded_chunk_rows(parts) or auto_chunk_rows(input_path, processes)
    tasks = plan(input_path, chunk_rows)
    ids = _id_columns(tasks[0], spec.features, id_columns)
    forget_reads()
    job = Job(
        str(spec.folder),
        spec.features,
        ids,
        str(parts),
        kinds=spec.kinds,
        nullable=spec.nullable,
        isolation=isolation,
    )
    remaining = _resume(tasks, job, spec, chunk_rows)
    result = BatchResult(str(output), None, engine, len(tasks), len(tasks) - len(remaining))
    total = sum(t.rows for t in tasks)
    done_rows = sum(t.rows for t in tasks if t not in remaining)
    progress(done_rows, total, result.resumed)
    started = time.perf_counter()
    finished = result.resumed

    def on_done(r: TaskResult) -> None:
        nonlocal done_rows, finished
        result.rows += r.rows
        result.scored += r.scored
        result.rejected += r.rejected
        result.model_loads[r.worker] = r.model_loads
        done_rows += r.rows
        finished += 1
        progress(done_rows, total, finished)

    if engine == "dask":
        from mlops_ci.batch.engines import run_dask

        result.workers = run_dask(remaining, job, scheduler, processes, on_done)
    else:
        from mlops_ci.batch.engines import run_local
        from mlops_ci.batch.score import close_models

        try:
            run_local(remaining, job, processes, on_done)
        finally:
            close_models()  # this process's model runners stop here
        forget_reads()
    result.seconds = time.perf_counter() - started
    _count_resumed(result, tasks, remaining, parts)
    if single:
        result.rejects = _merge(tasks, parts, output)
    elif any(rejects_path(parts, t.index).exists() for t in tasks):
        result.rejects = str(parts / "rejects-*.parquet")
    if result.reject_rate > max_reject_rate:
        raise GateFailed(
            f"{result.rejected} of {result.rows} rows rejected ({result.reject_rate:.2%}) > "
            f"max reject rate {max_reject_rate:.2%}; see {result.rejects}",
            hint="the scored rows are written; fix the rejected rows or raise --max-reject-rate",
        )
    return result


def _id_columns(
    first: Task, features: tuple[str, ...], chosen: tuple[str, ...] | None
) -> tuple[str, ...]:
    columns = list(read_task(first).table.column_names)
    missing = [f for f in features if f not in columns]
    if missing:
        raise InputError(f"{first.file}: feature column(s) {', '.join(missing)} missing")
    if chosen is None:
        return tuple(c for c in columns if c not in features)
    unknown = [c for c in chosen if c not in columns]
    if unknown:
        raise InputError(f"{first.file}: --id-column {', '.join(unknown)} not in the input")
    return chosen


def _recorded_chunk_rows(parts: Path) -> int | None:
    """The task size an earlier run of a job in ``parts`` used: resuming with another
    ``--processes`` keeps the cut its finished parts were made with."""
    record = read_json(parts / JOB_FILE) if parts.is_dir() else None
    if not isinstance(record, dict):
        return None
    value = record.get("chunk_rows", LEGACY_CHUNK_ROWS)
    return value if isinstance(value, int) and value > 0 else None


def _resume(tasks: list[Task], job: Job, spec: ModelSpec, chunk_rows: int) -> list[Task]:
    """Tasks still to run; a folder of another job's parts is refused, not mixed in."""
    parts = Path(job.parts)
    key = signature(
        tasks,
        {"model": spec.sha256, "ids": ",".join(job.id_columns), "chunk_rows": str(chunk_rows)},
    )
    record = read_json(parts / JOB_FILE) if parts.is_dir() else None
    if record is not None and record.get("signature") != key:
        raise InputError(
            f"{parts}: holds parts of another job (other input, model or chunk size)",
            hint="choose another --output, or delete that folder",
        )
    if parts.is_dir() and record is None and any(parts.iterdir()):
        raise InputError(f"{parts}: exists and is not a batch-score output folder")
    parts.mkdir(parents=True, exist_ok=True)
    write_json_atomic(
        parts / JOB_FILE, {"signature": key, "tasks": len(tasks), "chunk_rows": chunk_rows}
    )
    for stale in parts.glob(".*.tmp"):  # half-written files of an interrupted run
        stale.unlink()
    return [t for t in tasks if not part_path(parts, t.index).exists()]


def _count_resumed(
    result: BatchResult, tasks: list[Task], remaining: list[Task], parts: Path
) -> None:
    """Add the rows of the parts an earlier run finished to the totals."""
    import pyarrow.parquet as pq

    for task in tasks:
        if task in remaining:
            continue
        scored = pq.ParquetFile(part_path(parts, task.index)).metadata.num_rows
        rejects = rejects_path(parts, task.index)
        rejected = pq.ParquetFile(rejects).metadata.num_rows if rejects.exists() else 0
        result.rows += scored + rejected
        result.scored += scored
        result.rejected += rejected


def _merge(tasks: list[Task], parts: Path, output: Path) -> str | None:
    """Stream the parts, in task order, into ``output`` (then drop the parts folder)."""
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    def concat(paths: list[Path], target: Path, fmt: str, ids: bool = False) -> None:
        tmp = target.with_name(f".{target.name}.tmp")
        filled = [p for p in paths if pq.ParquetFile(p).metadata.num_rows] or paths[:1]
        schema: pa.Schema = pq.read_schema(filled[0]).remove_metadata()
        if ids and fmt == "parquet":
            schema = _integer_ids(schema, filled)
        writer = pq.ParquetWriter(tmp, schema) if fmt == "parquet" else pacsv.CSVWriter(tmp, schema)
        with writer:
            for path in filled:
                writer.write_table(pq.read_table(path).replace_schema_metadata(None).cast(schema))
        os.replace(tmp, target)

    from_csv = all(t.kind == "csv" for t in tasks)  # Parquet inputs keep the types they have
    concat([part_path(parts, t.index) for t in tasks], output, output.suffix.lstrip("."), from_csv)
    rejects = [rejects_path(parts, t.index) for t in tasks if rejects_path(parts, t.index).exists()]
    rejects_file = None
    if rejects:
        rejects_file = output.with_name(output.stem + ".rejects.parquet")
        concat(rejects, rejects_file, "parquet")
    shutil.rmtree(parts)
    return str(rejects_file) if rejects_file else None


# A whole number as written by anyone who meant one: no leading zero, no sign but minus, and
# within int64 (18 digits always are).
_INTEGER = r"^-?(0|[1-9][0-9]{0,17})$"


def _integer_ids(schema: Any, paths: list[Path]) -> Any:
    """CSV id columns are carried as text (lossless: "007" stays "007"); in one Parquet output
    an id column becomes int64 when every value in every part is a plain whole number."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    candidates = [
        f.name
        for f in schema
        if pa.types.is_string(f.type) and f.name not in ("prediction", "probability")
    ]
    for path in paths:
        if not candidates:
            break
        table = pq.read_table(path, columns=candidates)
        candidates = [
            name
            for name in candidates
            if table.column(name).null_count == 0
            and pc.all(pc.match_substring_regex(table.column(name), _INTEGER)).as_py() is not False
        ]
    for name in candidates:
        schema = schema.set(schema.get_field_index(name), pa.field(name, pa.int64()))
    return schema
