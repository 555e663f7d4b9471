"""The paths of mlops.yaml that must be on disk before a job runs, for `validate`: evaluate.data
(unless a pipeline stage writes it) and every train.inputs entry (train fingerprints them
before it runs anything). Each problem is one line ``FILE:LINE: key: what``.

Not a check of loading: every verb loads the file, and the one that reads a path says it
is missing itself (train: an input; compare: evaluate.data).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from mlops_ci.config.types import Config, line_of


def missing_paths(config: Config, written: Callable[[str], bool] = lambda path: False) -> list[str]:
    """Problems with the paths ``config`` reads; ``written(path)`` says whether a pipeline
    stage writes ``path`` (project-relative), which then need not exist yet."""
    name, root = config.path.name, config.root.resolve()
    problems = []
    for i, entry in enumerate(config.train.inputs):
        where = f"{name}:{line_of(config, ['train', 'inputs', i])}: train.inputs.{i}: '{entry}'"
        if _relative(root, entry) is None:
            problems.append(f"{where} is outside the project folder {root}")
        elif not (root / entry).exists():
            problems.append(
                f"{where} does not exist in {root} (train fingerprints its inputs before it runs)"
            )
    data = config.evaluate.data
    if not config.resolve(data).exists() and not written(_relative(root, data) or data):
        problems.append(
            f"{name}:{line_of(config, ['evaluate', 'data'])}: evaluate.data: '{data}' does not "
            f"exist in {root}, and no pipeline stage writes it"
        )
    return problems


def _relative(root: Path, path: str) -> str | None:
    """``path`` as a normalised POSIX path relative to ``root``, lexically (a link inside the
    project is in it), or None when it leaves the project."""
    full = Path(os.path.normpath(root / path))
    return full.relative_to(root).as_posix() if full.is_relative_to(root) else None
