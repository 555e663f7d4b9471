"""tests/unit mirrors mlops_ci: tests/unit/a/test_b.py tests mlops_ci/a/b.py (or the package
mlops_ci/a/b/), tests/unit/test_b.py tests mlops_ci/b.py (or mlops_ci/b/), so the tests of a
module are found by its path. A unit test starts no process and no server: those are in
tests/integration/."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "tests" / "unit"
PACKAGE = ROOT / "mlops_ci"

# Files that test the project as a whole, not one module.
WHOLE_PROJECT = {
    "test_architecture.py": "every module is placed by an import contract, none is too long",
    "test_docs.py": "the README and the documentation site",
    "test_layout.py": "this file: the tests' own layout",
}
# What starts a process or a server: a unit test imports none of it.
PROCESS_MODULES = (
    "subprocess",
    "multiprocessing",
    "http.server",
    "socketserver",
    "uvicorn",
    "tests.support.serve_helpers",
    "tests.support.mlflow_server",
    "tests.support.github_server",
    "tests.support.azure_server",
    "tests.support.loopback",
)
# uvicorn's settings and state objects start nothing: a protocol can be unit-tested on them.
DATA_ONLY = {
    "uvicorn.config",
    "uvicorn.config.Config",
    "uvicorn.server",
    "uvicorn.server.ServerState",
}
PROCESS_CALLS = {
    "Popen",
    "ProcessPoolExecutor",
    "create_subprocess_exec",
    "create_subprocess_shell",
}


def module_tested_by(test_file: Path) -> Path | None:
    """The module of mlops_ci a test file is named after, or None where there is none."""
    relative = test_file.relative_to(UNIT)
    name = relative.stem.removeprefix("test_")
    folder = PACKAGE.joinpath(*relative.parts[:-1])
    for candidate in (folder / f"{name}.py", folder / name / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def test_every_unit_test_file_is_named_after_a_module_of_mlops_ci() -> None:
    unnamed = [
        str(path.relative_to(ROOT))
        for path in sorted(UNIT.rglob("test_*.py"))
        if module_tested_by(path) is None
        and not (path.parent == UNIT and path.name in WHOLE_PROJECT)
    ]
    assert not unnamed, (
        f"tests/unit/a/test_b.py tests mlops_ci/a/b.py (or mlops_ci/a/b/); these name none: "
        f"{unnamed}"
    )
    assert all((UNIT / name).is_file() for name in WHOLE_PROJECT), "a listed file is gone"


def test_every_folder_of_unit_tests_is_a_package() -> None:
    # Two test files of one name in two folders (steps/test_drift.py, monitor/test_drift.py)
    # are two modules only if their folders are packages.
    folders = {path.parent for path in UNIT.rglob("test_*.py")}
    missing = sorted(str(f.relative_to(ROOT)) for f in folders if not (f / "__init__.py").is_file())
    assert not missing, f"no __init__.py in {missing}"


def imported(tree: ast.AST) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
            names |= {f"{node.module}.{alias.name}" for alias in node.names}
    return names


def process_starts(path: Path) -> list[str]:
    tree = ast.parse(path.read_text())
    found = [
        name
        for name in sorted(imported(tree))
        if name not in DATA_ONLY
        and any(name == m or name.startswith(m + ".") for m in PROCESS_MODULES)
    ]
    for node in ast.walk(tree):
        called = node.attr if isinstance(node, ast.Attribute) else getattr(node, "id", None)
        if called in PROCESS_CALLS:
            found.append(called)
    return found


def test_no_unit_test_starts_a_process_or_a_server() -> None:
    starting = {
        str(path.relative_to(ROOT)): found
        for path in sorted(UNIT.rglob("*.py"))
        if (found := process_starts(path))
    }
    assert not starting, f"these belong in tests/integration/: {starting}"
