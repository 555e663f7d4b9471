"""The import contracts of the design hold, and name every module (a new one cannot slip out).

`lint-imports` checks the contracts of pyproject's [tool.importlinter] (in .ci/run too); this
test adds what the tool cannot: that each module of mlops_ci is placed in a layer or in the
list of base modules, so a module added tomorrow is checked from its first commit.
"""

from __future__ import annotations

import ast
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[2]


PACKAGE = ROOT / "mlops_ci"


def contracts() -> list[dict[str, object]]:
    settings = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    return list(settings["contracts"])


def placed() -> set[str]:
    names: set[str] = set()
    for contract in contracts():
        if contract["type"] == "layers":
            for layer in contract["layers"]:  # type: ignore[attr-defined]
                names |= {part.strip() for part in layer.replace("|", ":").split(":")}
        if contract["type"] == "forbidden" and contract["name"].startswith("base"):  # type: ignore[attr-defined]
            names |= set(contract["source_modules"])  # type: ignore[call-overload]
    return names


def test_every_module_and_package_of_mlops_ci_is_placed_by_a_contract() -> None:
    modules = {
        f"mlops_ci.{p.stem}" for p in PACKAGE.glob("*.py") if p.stem not in ("__init__", "__main__")
    }
    packages = {f"mlops_ci.{p.parent.name}" for p in PACKAGE.glob("*/__init__.py")}
    unplaced = sorted((modules | packages) - placed())
    assert not unplaced, f"not in a layer nor among the base modules of pyproject: {unplaced}"
    assert not sorted(placed() - modules - packages), "a contract names a module that is gone"


MAX_LINES = 500


def test_no_module_is_over_500_lines_unless_its_docstring_says_why() -> None:
    # A module of one idea stays short; one that must be longer says so in its docstring
    # ("... over 500 lines because ..."), so the next reader knows it was meant.
    long = {
        str(p.relative_to(ROOT)): n
        for p in sorted(PACKAGE.rglob("*.py"))
        if (n := len(p.read_text().splitlines())) > MAX_LINES
        and "over 500 lines because" not in (ast.get_docstring(ast.parse(p.read_text())) or "")
    }
    assert not long, f"modules over {MAX_LINES} lines without a reason in their docstring: {long}"


MAX_LOOSE = 10


def test_at_most_ten_loose_modules_sit_at_the_top_of_the_package() -> None:
    # A module belongs in the package of its domain (config/, pipeline/, evaluation/, ...);
    # the top keeps what every layer shares (errors, records, provenance, credentials, ...).
    loose = sorted(p.name for p in PACKAGE.glob("*.py") if p.stem not in ("__init__", "__main__"))
    assert len(loose) <= MAX_LOOSE, f"{len(loose)} loose modules (at most {MAX_LOOSE}): {loose}"
