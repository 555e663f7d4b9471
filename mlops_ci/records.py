"""The local record of one CI job under ``.mlops/``: written atomically, never half-written."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from mlops_ci.errors import InputError


def mlops_dir(root: Path) -> Path:
    folder = root / ".mlops"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def write_text_atomic(path: Path, text: str) -> Path:
    """Write to a temporary file beside ``path`` and rename it over: readers see old or new."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; records and build contexts are shared
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_json_atomic(path: Path, data: Any) -> Path:
    return write_text_atomic(path, json.dumps(data, indent=2) + "\n")


def read_json(path: Path) -> Any | None:
    """The record at ``path``, None when absent; a corrupt record is an error naming it."""
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text("utf-8"))
    except ValueError as err:
        raise InputError(
            f"{path}: not valid JSON ({err})", hint="delete it and rerun the step"
        ) from None
