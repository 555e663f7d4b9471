"""Which data files a path names: a file, or the data files of a folder. Without pandas, so
`batch-score` plans a job without importing it."""

from __future__ import annotations

from pathlib import Path

from mlops_ci.errors import InputError

TABLE_SUFFIXES = (".csv", ".parquet", ".jsonl")
# A segment `mlops-ci serve` is still appending to (serve/inputlog.py's OPEN_SUFFIX).
OPEN_SEGMENT = ".jsonl.open"


def files_of(path: Path) -> list[Path]:
    """The data files ``path`` names: itself, or the data files in the folder (sorted)."""
    if path.is_file():
        return [path]
    if path.is_dir():
        found = sorted(
            p
            for p in path.iterdir()
            if p.is_file() and (p.suffix in TABLE_SUFFIXES or p.name.endswith(OPEN_SEGMENT))
        )
        if found:
            names = {p.name for p in found}
            return [p for p in found if not (set(successors(p.name)) & names)]
        raise InputError(f"{path}: no .csv, .parquet or .jsonl files in this folder")
    raise InputError(f"{path}: no such file or folder")


def successors(name: str) -> tuple[str, ...]:
    """What serve makes of an input-log file once it is done with it: an open segment is
    renamed ``.jsonl``, and that is converted to ``.parquet`` (``monitor.format``). A folder
    listed while both names exist holds the rows once: the later name is read."""
    if not name.startswith("inputs-"):
        return ()
    if name.endswith(OPEN_SEGMENT):
        stem = name[: -len(OPEN_SEGMENT)]
        return (stem + ".jsonl", stem + ".parquet")
    if name.endswith(".jsonl"):
        return (name[: -len(".jsonl")] + ".parquet",)
    return ()
