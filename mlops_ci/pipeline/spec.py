"""The stages of a pipeline, checked and put in order: what each reads, runs and writes.

Stages come from ``pipeline.stages`` in mlops.yaml or from a DVC ``dvc.yaml`` (``dvcfile``);
both are read into ``RawStage`` (paths as written, with a way to name where each key is) and
checked here the same way: unknown deps, a cycle, two stages writing one path, a path outside
the project, the training stage. Each problem is one line ``FILE:LINE: key: what``.
"""

from __future__ import annotations

import graphlib
import json
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from mlops_ci.config.types import Config, Scalar, line_of
from mlops_ci.errors import ConfigError
from mlops_ci.records import FOLDER

PARAMS_FILE = "params.yaml"  # DVC's default params file, in the stage's wdir
# Paths a stage may not write: mlops-ci's and git's own state.
_RESERVED = (FOLDER, ".git")
# A stage name, as the schema's pipeline.stages[].name has it: it names folders of the stage
# cache and MLflow artifacts, so never a path (no / or \, no leading . as in ..).
STAGE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}")

Where = Callable[[list[Any]], str]  # key path inside the stage -> "FILE:LINE: dotted.key"


@dataclass(frozen=True)
class RawStage:
    """A stage as written: paths relative to ``wdir``, each with its key path for messages."""

    name: str
    command: str
    deps: tuple[tuple[str, list[Any]], ...]
    params: tuple[tuple[str, list[Any]], ...]
    outs: tuple[tuple[str, list[Any]], ...]
    uncached_outs: tuple[tuple[str, list[Any]], ...]
    persist: tuple[str, ...]
    shell: bool
    wdir: str
    always_changed: bool
    where: Where


@dataclass(frozen=True)
class Stage:
    """A checked stage; every path is project-relative and POSIX (``data/raw.csv``)."""

    name: str
    command: str
    deps: tuple[str, ...]
    params: tuple[str, ...]  # as written: a train.params name, a params.yaml key or FILE:key
    outs: tuple[str, ...]  # cached and restored
    uncached_outs: tuple[str, ...]
    persist: tuple[str, ...]
    shell: bool
    wdir: str
    always_changed: bool
    upstream: tuple[str, ...]  # the stages whose outs it reads

    @property
    def all_outs(self) -> tuple[str, ...]:
        return self.outs + self.uncached_outs


@dataclass(frozen=True)
class Pipeline:
    stages: tuple[Stage, ...]  # in the order they run
    training: str  # the stage whose outs hold train.outputs.model
    source: str  # "mlops.yaml" or the DVC file, for messages

    def stage(self, name: str) -> Stage:
        return next(s for s in self.stages if s.name == name)

    def producer(self, path: str) -> Stage | None:
        """The stage whose outs hold ``path`` (the path itself or a folder above it)."""
        rel = _inside(".", path) or path
        return next((s for s in self.stages if any(covers(o, rel) for o in s.all_outs)), None)


def locate(node: Any, path: list[Any]) -> int:
    """1-based line of the YAML node at ``path`` (or of its deepest existing parent)."""
    line = node.start_mark.line + 1 if node is not None else 1
    for part in path:
        child = None
        if isinstance(node, yaml.MappingNode):
            child = next((v for k, v in node.value if k.value == str(part)), None)
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            child = node.value[part] if part < len(node.value) else None
        if child is None:
            break
        node, line = child, child.start_mark.line + 1
    return line


def covers(outer: str, inner: str) -> bool:
    """``inner`` is ``outer`` or inside it (both project-relative POSIX paths)."""
    return inner == outer or inner.startswith(outer.rstrip("/") + "/")


def overlaps(a: str, b: str) -> bool:
    return covers(a, b) or covers(b, a)


def from_mlops(config: Config) -> list[RawStage]:
    """``pipeline.stages`` of mlops.yaml (already valid against the schema)."""
    name = config.path.name

    def where(i: int) -> Where:
        def at(keys: list[Any]) -> str:
            path = ["pipeline", "stages", i, *keys]
            return f"{name}:{line_of(config, path)}: {'.'.join(str(p) for p in path)}"

        return at

    out = []
    for i, s in enumerate(config.pipeline.stages):

        def listed(key: str, s: dict[str, Any] = s) -> tuple[tuple[str, list[Any]], ...]:
            return tuple((p, [key, j]) for j, p in enumerate(s.get(key, [])))

        out.append(
            RawStage(
                name=s["name"],
                command=s["command"],
                deps=listed("deps"),
                params=listed("params"),
                outs=listed("outs"),
                uncached_outs=listed("uncached_outs"),
                persist=tuple(s.get("persist", [])),
                shell=bool(s.get("shell", False)),
                wdir=s.get("wdir", "."),
                always_changed=bool(s.get("always_changed", False)),
                where=where(i),
            )
        )
    return out


def check(raw: list[RawStage], config: Config, source: str) -> Pipeline:
    """Every problem of the stages at once, or the pipeline in run order."""
    problems: list[str] = []
    root = config.root.resolve()
    names: set[str] = set()
    resolved: list[tuple[RawStage, Stage]] = []
    for r in raw:
        if r.name in names:
            problems.append(f"{r.where(['name'])}: a second stage named '{r.name}'")
        if not STAGE_NAME.fullmatch(r.name):
            problems.append(
                f"{r.where([])}: '{r.name}': stage names are 1 to 64 letters, digits, "
                "_ . and - (not starting with . or -)"
            )
        names.add(r.name)
        wdir = _inside(".", r.wdir)
        if wdir is None:
            problems.append(f"{r.where(['wdir'])}: '{r.wdir}' is outside the project folder")
            continue

        outs = _paths(r, r.outs, wdir, config, problems, out=True)
        uncached = _paths(r, r.uncached_outs, wdir, config, problems, out=True)
        deps = _paths(r, r.deps, wdir, config, problems, out=False)
        persist = [p for p in (_inside(wdir, q) for q in r.persist) if p is not None]
        for dep, (_, keys) in zip(deps, r.deps, strict=False):
            if any(overlaps(o, dep) for o in outs + uncached):
                problems.append(f"{r.where(keys)}: '{dep}' is both a dep and an out of the stage")
        stage = Stage(
            r.name, r.command, tuple(deps), tuple(p for p, _ in r.params), tuple(outs),
            tuple(uncached), tuple(persist), r.shell, wdir, r.always_changed, (),
        )  # fmt: skip
        resolved.append((r, stage))
    problems += _writers(resolved)
    problems += _unknown_deps(resolved, root)
    problems += _unknown_params(resolved, config)
    if problems:
        raise ConfigError(problems, file=config.path)
    stages = _ordered(resolved, problems)
    training = _training(stages, config, source, problems)
    if problems:
        raise ConfigError(problems, file=config.path)
    return Pipeline(tuple(stages), training, source)


def _paths(
    r: RawStage,
    entries: tuple[tuple[str, list[Any]], ...],
    wdir: str,
    config: Config,
    problems: list[str],
    out: bool,
) -> list[str]:
    """The entries as project-relative paths; one inside the project or a problem each."""
    found = []
    for path, keys in entries:
        rel = _inside(wdir, path)
        if rel is None:
            problems.append(
                f"{r.where(keys)}: '{path}' is outside the project folder {config.root}"
            )
        elif out and (rel == "." or rel.split("/")[0] in _RESERVED):
            problems.append(
                f"{r.where(keys)}: '{path}' cannot be an out (it is the project, or "
                "mlops-ci's or git's own folder)"
            )
        elif out and rel == config.path.name:
            problems.append(f"{r.where(keys)}: '{path}' is the config itself")
        elif out and rel == config.path.with_suffix(".lock").name:
            problems.append(f"{r.where(keys)}: '{path}' is the lock file `mlops-ci train` writes")
        else:
            found.append(rel)
    return found


def normalised(path: str) -> str | None:
    """``path`` as a normalised project-relative POSIX path; None when it leaves the project."""
    return _inside(".", path)


def _inside(wdir: str, path: str) -> str | None:
    """``path`` (relative to ``wdir``) as a normalised project-relative POSIX path, or None
    when it leaves the project (``..``, an absolute path elsewhere)."""
    joined = os.path.normpath(os.path.join(wdir, path))
    if os.path.isabs(joined) or joined == ".." or joined.startswith("../"):
        return None
    return PurePosixPath(joined).as_posix()


def _writers(resolved: list[tuple[RawStage, Stage]]) -> list[str]:
    problems = []
    seen: list[tuple[str, str]] = []  # (out, stage)
    for r, s in resolved:
        for out, (_, keys) in zip(s.all_outs, r.outs + r.uncached_outs, strict=False):
            other = next(((p, n) for p, n in seen if overlaps(p, out)), None)
            if other is not None:
                problems.append(
                    f"{r.where(keys)}: '{out}' is also written by stage '{other[1]}' "
                    f"('{other[0]}'): one path, one stage"
                )
            seen.append((out, s.name))
    return problems


def _unknown_deps(resolved: list[tuple[RawStage, Stage]], root: Path) -> list[str]:
    outs = [o for _, s in resolved for o in s.all_outs]
    problems = []
    for r, s in resolved:
        for dep, (_, keys) in zip(s.deps, r.deps, strict=False):
            if not (root / dep).exists() and not any(overlaps(o, dep) for o in outs):
                problems.append(
                    f"{r.where(keys)}: '{dep}' is neither in the project nor an out of a stage"
                )
    return problems


def _unknown_params(resolved: list[tuple[RawStage, Stage]], config: Config) -> list[str]:
    problems = []
    for r, s in resolved:
        for name, keys in r.params:
            try:
                param_value(config, s, name, config.train.params)
            except KeyError as err:
                problems.append(f"{r.where(keys)}: {err.args[0]}")
    return problems


def _ordered(resolved: list[tuple[RawStage, Stage]], problems: list[str]) -> list[Stage]:
    """Topological order by deps on outs (ties in the written order); a cycle is a problem."""
    stages = [s for _, s in resolved]
    where = {s.name: r.where for r, s in resolved}
    upstream: dict[str, tuple[str, ...]] = {}
    for s in stages:
        ups = [
            o.name
            for o in stages
            if o.name != s.name and any(overlaps(out, d) for out in o.all_outs for d in s.deps)
        ]
        upstream[s.name] = tuple(ups)
    sorter = graphlib.TopologicalSorter(upstream)
    try:
        sorter.prepare()
    except graphlib.CycleError as err:
        cycle = list(err.args[1])
        problems.append(
            f"{where[cycle[0]]([])}: stages {' → '.join(cycle)} form a cycle (each reads an out "
            "of the next): a pipeline is a DAG"
        )
        return stages
    position = {s.name: i for i, s in enumerate(stages)}
    order: list[str] = []
    while sorter.is_active():
        ready = sorted(sorter.get_ready(), key=position.__getitem__)
        order.extend(ready)
        sorter.done(*ready)
    by_name = {s.name: s for s in stages}
    return [replace(by_name[n], upstream=upstream[n]) for n in order]


def _training(stages: list[Stage], config: Config, source: str, problems: list[str]) -> str:
    model = _inside(".", config.train.model_output) or config.train.model_output
    found = [s.name for s in stages if any(covers(o, model) for o in s.all_outs)]
    metrics = _inside(".", config.train.metrics_output) or config.train.metrics_output
    if config.train.metrics_output_set and not any(
        covers(o, metrics) for s in stages for o in s.all_outs
    ):
        line = line_of(config, ["train", "outputs", "metrics"])
        problems.append(
            f"{config.path.name}:{line}: train.outputs.metrics: no stage of {source} writes "
            f"'{metrics}'; list it in a stage's outs (or uncached_outs), or remove the key"
        )
    if not found:
        line = line_of(config, ["train", "outputs", "model"])
        problems.append(
            f"{config.path.name}:{line}: train.outputs.model: no stage of {source} writes "
            f"'{model}'; the training stage is the one whose outs include it"
        )
        return ""
    return found[0]


def param_value(config: Config, stage: Stage, name: str, train_params: Mapping[str, Scalar]) -> Any:
    """The value of a stage's param: a train.params name (with --param overrides), else a
    dotted key of params.yaml in the stage's wdir, or ``FILE:key``. KeyError says why not."""
    file_part, sep, key = name.rpartition(":")
    if not sep and name in train_params:
        return train_params[name]
    file = file_part if sep else PARAMS_FILE
    path = config.root / stage.wdir / file
    values = _params_file(path)
    if values is None:
        known = ", ".join(train_params) or "none"
        raise KeyError(
            f"param '{name}' is not in train.params ({known}) and there is no {file}"
            f" in {stage.wdir}"
        )
    node: Any = values
    for part in key.split("."):
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            raise KeyError(f"param '{name}': no key '{key}' in {file}")
    return node


def _params_file(path: Path) -> Any:
    """A YAML or JSON params file (JSON is YAML); None when absent. TOML and .py params files
    of DVC are refused by name: their reading is DVC's."""
    if not path.is_file():
        return None
    if path.suffix not in (".yaml", ".yml", ".json"):
        raise KeyError(f"{path.name}: only YAML and JSON params files are read")
    try:
        text = path.read_text("utf-8")
        return json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (OSError, ValueError, yaml.YAMLError) as err:
        raise KeyError(f"{path.name}: cannot be read: {str(err).splitlines()[0]}") from None
