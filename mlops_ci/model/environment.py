"""The libraries a model needs, found from the model itself: the modules loading and scoring it
imported (what MLflow's ``infer_pip_requirements`` records, here taken in the runner's child
that loads the model anyway, so nothing is loaded twice), and a pyfunc folder's own
``requirements.txt``; each mapped to its distribution.

The names this child says are only a claim: the parent keeps those installed in its own
environment and pins them itself (from the training run's lock, else what is installed).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

# A distribution name as PEP 508 spells it.
NAME = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._-]{0,98}[A-Za-z0-9])?$")
# What serving always installs, or mlops-ci itself: never a model's own requirement.
_ALWAYS = {"mlops-ci", "pip", "setuptools", "wheel"}
# The pyfunc flavor loads with MLflow's lean client; the full server is not needed to serve.
_RENAMED = {"mlflow": "mlflow-skinny"}
# A requirements.txt line of a name, its extras and a version or marker (no option, URL, path).
_REQUIREMENT = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[[^\]]*\])?\s*(?:[<>=!~;].*)?$")


def loaders(path: Path) -> None:
    """Import what mlops-ci's own loader of ``path`` imports, so that a :func:`snapshot`
    taken after it sees only what the model brings: skops for a skops file (its type list
    imports every scikit-learn module, and with them pytest, rich and more), MLflow's pyfunc
    for a pyfunc folder (its requirement is said apart), joblib for the rest. Only what that
    loader needs: a child that unpickles a joblib file does not pay for skops (seconds)."""
    import joblib  # noqa: F401

    by_skops = path.suffix.lower() == ".skops" or (path / "model.skops").is_file()
    if by_skops:
        import skops.io  # noqa: F401
    if path.is_dir():
        from mlops_ci.model.pyfunc import is_pyfunc_folder

        if is_pyfunc_folder(path):
            import mlflow.pyfunc  # noqa: F401


def snapshot() -> set[str]:
    """The top-level modules imported so far."""
    return {name.partition(".")[0] for name in list(sys.modules)}


def imported_distributions(before: set[str]) -> list[str]:
    """The distributions of the top-level modules imported since ``before``, sorted."""
    from importlib.metadata import packages_distributions

    owners = packages_distributions()
    found: set[str] = set()
    for module in snapshot() - before:
        if module in sys.stdlib_module_names or module.startswith("_"):
            continue
        for dist in owners.get(module, ()):
            found.add(_RENAMED.get(dist.lower(), dist))
    return sorted(d for d in found if d.lower() not in _ALWAYS)


def folder_requirements(folder: Path) -> list[str]:
    """The distribution names of an MLflow folder's ``requirements.txt`` (plain ``name``,
    ``name==version`` or ``name>=...`` lines; options, URLs and paths are skipped)."""
    path = folder / "requirements.txt"
    if not path.is_file():
        return []
    names = []
    for line in path.read_text("utf-8", "replace").splitlines():
        line = line.split("#", 1)[0].strip()
        match = _REQUIREMENT.match(line)
        if match and NAME.match(match.group(1)):
            name = match.group(1)
            names.append(_RENAMED.get(name.lower(), name))
    return sorted({n for n in names if n.lower() not in _ALWAYS})


def canonical(name: str) -> str:
    """A distribution's name as PEP 503 normalises it (the environment lock's spelling)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def prune(names: list[str]) -> list[str]:
    """``names`` without those another of them requires, directly or not (pip installs them
    with it, at the version it needs): MLflow's ``infer_pip_requirements`` prunes the same."""
    from importlib import metadata

    def requires(name: str) -> set[str]:
        try:
            found = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            return set()
        out = set()
        for line in found:
            spec, _, marker = line.partition(";")
            match = _REQUIREMENT.match(spec.strip())
            if match and "extra" not in marker:
                out.add(canonical(match.group(1)))
        return out

    under: set[str] = set()
    stack = [dep for name in names for dep in requires(name)]
    while stack:
        dep = stack.pop()
        if dep not in under:
            under.add(dep)
            stack.extend(requires(dep))
    return sorted({n for n in names if canonical(n) not in under})
