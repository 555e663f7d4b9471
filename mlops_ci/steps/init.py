"""`mlops-ci init`: a starter mlops.yaml and, on request, the CI workflow templates."""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import yaml

from mlops_ci import __version__
from mlops_ci.bundled import bundled
from mlops_ci.config.file import schema, with_defaults
from mlops_ci.errors import InputError, MlopsError
from mlops_ci.pipeline.dvcfile import read_dvc, to_mlops
from mlops_ci.pipeline.spec import normalised
from mlops_ci.records import FOLDER

# A DVC out named like one of these is taken for the model (the training stage's out).
MODEL_SUFFIXES = {".joblib", ".pkl", ".pickle", ".skops", ".onnx", ".ubj"}

ACTIONS_REPO = "mlops-ci/mlops-ci"  # where the templates' `uses:` point by default
CI_TEMPLATES = {
    "github": ("templates/github", ".github/workflows"),
    "azure": ("templates/azure-pipelines", ".azure-pipelines"),
}
GITIGNORE = ".gitignore"
IGNORE_HEADER = "# mlops-ci: its records and embedded MLflow registry, and what training writes"


@dataclass(frozen=True)
class InitResult:
    written: list[Path] = field(default_factory=list)
    kept: list[Path] = field(default_factory=list)  # existed already; --force overwrites
    ignored: list[str] = field(default_factory=list)  # lines added to .gitignore
    gitignore: Path | None = None  # the .gitignore those lines went to (None: none added)


def init_project(
    folder: Path,
    ci: str | None = None,
    force: bool = False,
    actions_repo: str = ACTIONS_REPO,
    from_dvc: str | None = None,
) -> InitResult:
    starter = resources.files("mlops_ci.config").joinpath("templates/mlops.yaml").read_text("utf-8")
    if from_dvc is not None:
        starter = with_dvc_stages(starter, folder / from_dvc, from_dvc)
    files: dict[Path, str] = {folder / "mlops.yaml": starter}
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
    if folder / "mlops.yaml" in result.written:  # the lines follow the starter's own paths
        added = merge_gitignore(folder / GITIGNORE, ignore_lines(starter))
        if added:
            result = dataclasses.replace(result, ignored=added, gitignore=folder / GITIGNORE)
    if not result.written:
        raise MlopsError(
            f"{', '.join(str(p) for p in result.kept)}: already exist"
            + ("s" if len(result.kept) == 1 else ""),
            hint="pass --force to overwrite",
        )
    return result


def ignore_lines(starter: str) -> list[str]:
    """The .gitignore lines of a project with this mlops.yaml: mlops-ci's folder (the job's
    records, the embedded registry and its artifacts) and train's outputs (their top folder,
    anchored, unless an input or evaluate.data lives there too: then the files themselves)."""
    filled = with_defaults(yaml.safe_load(starter), schema())
    reads = [normalised(p) for p in [*filled["train"]["inputs"], filled["evaluate"]["data"]]]
    lines = [f"{FOLDER}/"]
    for output in filled["train"]["outputs"].values():
        path = normalised(output)
        if path is None:
            continue  # outside the project: not this repository's to ignore
        top = path.split("/")[0]
        shared = path == top or any(r is not None and r.split("/")[0] == top for r in reads)
        line = f"/{path}" if shared else f"/{top}/"
        if line not in lines:
            lines.append(line)
    return lines


def merge_gitignore(path: Path, lines: list[str]) -> list[str]:
    """Append to ``path`` the ``lines`` it does not hold yet (``outputs``, ``/outputs/`` and
    ``outputs/`` are one), never rewriting what is there; the lines added."""
    try:
        text = path.read_text("utf-8", errors="surrogateescape") if path.exists() else ""
        have = {_pattern(line) for line in text.splitlines()}
        added = [line for line in lines if _pattern(line) not in have]
        if added:
            gap = "" if not text or text.endswith("\n") else "\n"
            with path.open("a", encoding="utf-8", errors="surrogateescape") as fh:
                fh.write(gap + "\n".join([IGNORE_HEADER, *added]) + "\n")
    except OSError as err:
        raise InputError(
            f"{path}: cannot be added to: {err.strerror or err}",
            hint=f"add these lines to it yourself: {' '.join(lines)}",
        ) from None
    return added


def _pattern(line: str) -> str:
    return line.strip().strip("/")


def with_dvc_stages(starter: str, dvc_file: Path, shown: str) -> str:
    """The starter with its train block replaced by the stages of ``dvc_file`` (pipeline.stages
    run as DVC runs them: with a shell) and train.outputs.model set to the last stage's model
    file (an out named like a model: .joblib, .pkl, .skops, .onnx, ...)."""
    if not dvc_file.is_file():
        raise InputError(f"--from-dvc {shown}: no such file ({dvc_file})")
    stages = to_mlops(read_dvc(dvc_file, shown))
    outs = [o for s in stages for o in s.get("outs", []) + s.get("uncached_outs", [])]
    models = [o for o in outs if Path(o).suffix in MODEL_SUFFIXES]
    model = models[-1] if models else "outputs/model.joblib"
    note = "" if models else "   # no out of dvc.yaml looks like a model file: name it here"
    block = (
        f"# The stages of {shown} (written by `mlops-ci init --from-dvc`; or use the file in\n"
        f"# place with `pipeline: {{dvc: {shown}}}`). Each stage is cached by its command,\n"
        "# deps and params; the training stage is the one whose outs hold train.outputs.model.\n"
        "# `mlops-ci train` writes mlops.lock (each stage's key and outs' sha256): commit it\n"
        "# with the code, as dvc.lock; a stage's outs are restored only when it names them.\n"
        f"train:\n  outputs:\n    model: {model}{note}\n\n"
        + yaml.safe_dump({"pipeline": {"stages": stages}}, sort_keys=False, width=100)
        + "\n"
    )
    start, end = starter.index("\ntrain:\n") + 1, starter.index("\nevaluate:\n") + 1
    return starter[:start] + block + starter[end:]


def _retarget(text: str, actions_repo: str) -> str:
    """Point the templates at ``actions_repo`` at the tag of this mlops-ci version."""
    pattern = rf"{re.escape(ACTIONS_REPO)}/actions/([a-z-]+)@v[0-9][0-9.]*"
    return re.sub(pattern, rf"{actions_repo}/actions/\1@v{__version__}", text)
