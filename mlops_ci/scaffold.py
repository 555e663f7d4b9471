"""`mlops-ci init`: a starter mlops.yaml and, on request, the CI workflow templates."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from mlops_ci import __version__
from mlops_ci.bundled import bundled
from mlops_ci.errors import MlopsError

ACTIONS_REPO = "mlops-ci/mlops-ci"  # where the templates' `uses:` point by default
CI_TEMPLATES = {
    "github": ("templates/github", ".github/workflows"),
    "azure": ("templates/azure-pipelines", ".azure-pipelines"),
}


@dataclass(frozen=True)
class InitResult:
    written: list[Path] = field(default_factory=list)
    kept: list[Path] = field(default_factory=list)  # existed already; --force overwrites


def init_project(
    folder: Path, ci: str | None = None, force: bool = False, actions_repo: str = ACTIONS_REPO
) -> InitResult:
    files: dict[Path, str] = {
        folder / "mlops.yaml": resources.files("mlops_ci")
        .joinpath("templates/mlops.yaml")
        .read_text("utf-8")
    }
    if ci is not None:
        source, target = CI_TEMPLATES[ci]
        for template in sorted(bundled(source).glob("*.yml")):
            files[folder / target / template.name] = _retarget(
                template.read_text("utf-8"), actions_repo
            )
    result = InitResult()
    for path, text in files.items():
        if path.exists() and not force:
            result.kept.append(path)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        result.written.append(path)
    if not result.written:
        raise MlopsError(
            f"{', '.join(str(p) for p in result.kept)}: already exist"
            + ("s" if len(result.kept) == 1 else ""),
            hint="pass --force to overwrite",
        )
    return result


def _retarget(text: str, actions_repo: str) -> str:
    """Point the templates at ``actions_repo`` at the tag of this mlops-ci version."""
    pattern = rf"{re.escape(ACTIONS_REPO)}/actions/([a-z-]+)@v[0-9][0-9.]*"
    return re.sub(pattern, rf"{actions_repo}/actions/\1@v{__version__}", text)
