"""An empty MLflow SQLite store, made once per test process and copied where a test's registry
will be.

Creating a store runs MLflow's schema migrations (about 4 s here with MLflow 3.17), which each
of dozens of tests paid before doing anything it tests. A copy of a store made by this very
MLflow is the same file a first run would have made. The product's own creation of a store is
still run: by the demo, and by every test that names its store itself.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from mlflow.tracking import MlflowClient

from mlops_ci.steps import demo

_template: Path | None = None


def seed_store(db: Path) -> Path:
    """Put an empty, migrated MLflow store at ``db`` (a SQLite file path) unless a store is
    already there, and return it."""
    global _template
    if _template is None:
        made = Path(tempfile.mkdtemp(prefix="mlflow-store-")) / "mlflow.db"
        MlflowClient(f"sqlite:///{made}").search_experiments()
        _template = made
    if db.exists():
        return db
    db.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(_template, db)
    return db


def copy_example(dest: Path, name: str = demo.EXAMPLE) -> Path:
    """The example copied to ``dest`` with its embedded store (``.mlops/mlflow.db``) seeded."""
    project = demo.copy_example(dest, name)
    seed_store(project / ".mlops" / "mlflow.db")
    return project


def with_package(text: str, lines: str) -> str:
    """An example's mlops.yaml ``text`` with ``lines`` as its package section: the example's
    own (iris's is its file's last section) is replaced, as a key given twice is refused."""
    head, found, _ = text.partition("\npackage:\n")
    return head + ("\n" if found else "") + "package:\n" + lines
