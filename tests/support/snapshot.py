"""A project set up once per module and copied for each test that starts from it.

Training, comparing and registering a model takes seconds of model processes; a module whose
tests each start from the same registered version pays that once and gives each test a copy
of its own. MLflow's SQLite store holds absolute paths to the artifacts (the experiment's, the
run's, the logged model's and the version's locations): a copy's store names the copy's own
folder, so whatever a test changes (tags, artifacts, records) no other test sees. The files
are copied as they are (an MLmodel keeps the ``artifact_path`` it was logged at, which nothing
reads: the sha256 recorded at registration covers it).
"""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path


def relocated(source: Path, dest: Path) -> Path:
    """``source`` copied to ``dest``, each SQLite store in it naming ``dest`` where it named
    ``source``."""
    shutil.copytree(source, dest, symlinks=True)
    old, new = str(source.resolve()), str(dest.resolve())
    for path in sorted(dest.rglob("*")):
        if path.is_file() and not path.is_symlink():
            with path.open("rb") as file:
                is_store = file.read(16) == b"SQLite format 3\0"
            if is_store:
                _relocate_store(path, old, new)
    # MLflow keeps each run's and logged model's artifact repository by id, for the process:
    # the copy's runs have the ids of the source's, at another place.
    from mlflow.tracking._tracking_service import utils

    utils._artifact_repos_cache.clear()
    return dest


def _relocate_store(db: Path, old: str, new: str) -> None:
    """Every text value of every table naming ``old`` rewritten to name ``new``."""
    store = sqlite3.connect(db)
    try:
        with store:
            tables = store.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            for (table,) in tables.fetchall():
                for column in [row[1] for row in store.execute(f'PRAGMA table_info("{table}")')]:
                    store.execute(
                        f'UPDATE "{table}" SET "{column}" = replace("{column}", ?, ?) '
                        f'WHERE typeof("{column}") = \'text\' AND instr("{column}", ?) > 0',
                        (old, new, old),
                    )
    finally:
        store.close()
