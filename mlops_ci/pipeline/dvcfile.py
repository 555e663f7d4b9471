"""A DVC pipeline file (dvc.yaml) read as it is, into the stages mlops-ci runs.

DVC's format (dvc.org, "dvc.yaml Files"): ``stages: {NAME: {cmd, wdir, deps, outs, params,
metrics, plots, frozen, always_changed, desc, meta}}``; ``cmd`` is a string or a list run in
order by a shell; an out is a path or ``{path: {cache, persist, ...}}``; a param is a key of
``params.yaml`` or ``{FILE: [keys]}``. Read with PyYAML, not the dvc package: mlops-ci needs the
stage definitions only (not DVC's remotes or lock file; ``pip install --dry-run`` resolves
``dvc`` to 97 distributions), and a project that uses DVC keeps using it beside mlops-ci.

Refused with a line each: ``foreach``/``matrix`` stages and ``${}`` templating (their expansion
is DVC's own), a frozen stage (it never runs, so nothing of it could be cached or restored).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from mlops_ci.errors import ConfigError
from mlops_ci.pipeline.spec import RawStage, locate

KNOWN = {"cmd", "wdir", "deps", "outs", "params", "metrics", "plots", "frozen"}
KNOWN |= {"always_changed", "desc", "meta"}


def read_dvc(file: Path, shown: str) -> list[RawStage]:
    """The stages of ``file`` (``shown`` names it in messages, e.g. ``dvc.yaml``)."""
    try:
        text = file.read_text("utf-8")
        data = yaml.safe_load(text)
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except OSError as err:
        raise ConfigError([f"{shown}: cannot be read: {err.strerror or err}"]) from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        line = mark.line + 1 if mark is not None else 1
        raise ConfigError([f"{shown}:{line}: YAML syntax error: {err}".splitlines()[0]]) from None
    if not isinstance(data, dict) or not isinstance(data.get("stages"), dict):
        raise ConfigError([f"{shown}:1: a DVC pipeline file has a mapping `stages: {{NAME: ...}}`"])
    problems: list[str] = []
    if "vars" in data:
        problems.append(
            f"{shown}:{locate(node, ['vars'])}: vars: DVC templating is not supported; write the "
            "values into the stages (mlops-ci reads params from params.yaml itself)"
        )
    stages: list[RawStage] = []
    for name, body in data["stages"].items():
        where = ["stages", name]
        stage = _stage(str(name), body, node, where, shown, problems)
        if stage is not None:
            stages.append(stage)
    if problems:
        raise ConfigError(problems, file=file)
    return stages


def _stage(
    name: str, body: Any, node: Any, where: list[Any], shown: str, problems: list[str]
) -> RawStage | None:
    def at(*keys: Any) -> str:
        path = [*where, *keys]
        return f"{shown}:{locate(node, path)}: {'.'.join(str(p) for p in path)}"

    if not isinstance(body, dict):
        problems.append(f"{at()}: a stage is a mapping with cmd, deps, outs, ...")
        return None
    if "foreach" in body or "matrix" in body:
        kind = "foreach" if "foreach" in body else "matrix"
        problems.append(
            f"{at(kind)}: {kind} stages are not supported: DVC expands them itself; write one "
            "stage per item"
        )
        return None
    if "${" in yaml.safe_dump(body):
        problems.append(f"{at()}: ${{}} templating is not supported; write the values in")
        return None
    for key in body:
        if key not in KNOWN:
            problems.append(f"{at(key)}: not a key of a DVC stage ({', '.join(sorted(KNOWN))})")
    if body.get("frozen"):
        problems.append(
            f"{at('frozen')}: a frozen stage never runs, so mlops-ci cannot cache or restore it; "
            "unfreeze it or list its outs as train.inputs"
        )
    cmd = body.get("cmd")
    if isinstance(cmd, list) and cmd and all(isinstance(c, str) for c in cmd):
        command = " && ".join(cmd)  # DVC runs a list in order, stopping at the first failure
    elif isinstance(cmd, str) and cmd.strip():
        command = cmd
    else:
        problems.append(f"{at('cmd')}: required: a command, or a list of commands")
        return None
    wdir = body.get("wdir", ".")
    if not isinstance(wdir, str):
        problems.append(f"{at('wdir')}: must be a folder path")
        wdir = "."
    outs: list[tuple[str, list[Any]]] = []
    uncached: list[tuple[str, list[Any]]] = []
    persist: list[str] = []
    for key in ("outs", "metrics", "plots"):
        for i, entry in enumerate(_listed(body.get(key), at(key), problems)):
            path, flags = _entry(entry, at(key, i), problems)
            if path is None:
                continue
            (outs if flags.get("cache", True) else uncached).append((path, [key, i]))
            if flags.get("persist", False):
                persist.append(path)
    deps = []
    for i, entry in enumerate(_listed(body.get("deps"), at("deps"), problems)):
        if isinstance(entry, str) and entry:
            deps.append((entry, ["deps", i]))
        else:
            problems.append(f"{at('deps', i)}: a dep is a path")
    params = []
    for i, entry in enumerate(_listed(body.get("params"), at("params"), problems)):
        if isinstance(entry, str) and entry:
            params.append((entry, ["params", i]))
        elif isinstance(entry, dict) and len(entry) == 1:
            ((file, keys),) = entry.items()
            if keys in (None, []):  # DVC: the whole file is the dependency
                deps.append((str(file), ["params", i]))
            elif isinstance(keys, list) and all(isinstance(k, str) for k in keys):
                params.extend((f"{file}:{k}", ["params", i]) for k in keys)
            else:
                problems.append(f"{at('params', i)}: {{FILE: [keys]}} lists key names")
        else:
            problems.append(f"{at('params', i)}: a param is a key name or {{FILE: [keys]}}")
    return RawStage(
        name=name,
        command=command,
        deps=tuple(deps),
        params=tuple(params),
        outs=tuple(outs),
        uncached_outs=tuple(uncached),
        persist=tuple(persist),
        shell=True,  # DVC runs cmd with the user's shell: pipes and redirection are common
        wdir=wdir,
        always_changed=bool(body.get("always_changed", False)),
        where=lambda keys: at(*keys),
    )


def _listed(value: Any, where: str, problems: list[str]) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        problems.append(f"{where}: must be a list")
        return []
    return value


def _entry(entry: Any, where: str, problems: list[str]) -> tuple[str | None, dict[str, Any]]:
    """An out, metrics or plots entry: ``path`` or ``{path: {flags}}``."""
    if isinstance(entry, str) and entry:
        return entry, {}
    if isinstance(entry, dict) and len(entry) == 1:
        ((path, flags),) = entry.items()
        return str(path), flags if isinstance(flags, dict) else {}
    problems.append(f"{where}: an out is a path or {{path: {{cache: ..., persist: ...}}}}")
    return None, {}


def to_mlops(stages: list[RawStage]) -> list[dict[str, Any]]:
    """The stages as ``pipeline.stages`` entries of mlops.yaml (for ``init --from-dvc``)."""
    out = []
    for s in stages:
        entry: dict[str, Any] = {"name": s.name, "command": s.command, "shell": True}
        if s.wdir not in ("", "."):
            entry["wdir"] = s.wdir
        for key, values in (
            ("deps", [p for p, _ in s.deps]),
            ("params", [p for p, _ in s.params]),
            ("outs", [p for p, _ in s.outs]),
            ("uncached_outs", [p for p, _ in s.uncached_outs]),
            ("persist", list(s.persist)),
        ):
            if values:
                entry[key] = values
        if s.always_changed:
            entry["always_changed"] = True
        out.append(entry)
    return out
