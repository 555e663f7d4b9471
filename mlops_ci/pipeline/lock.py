"""The lock file, ``mlops.lock`` beside mlops.yaml: the trust root of the stage cache, committed
with the code as DVC's ``dvc.lock`` is.

``mlops-ci train`` writes it as each stage runs or is restored: per stage its key (the sha256
of its command, deps, params, outs and environment lock, ``run.stage_key``), the command, the
environment lock's sha256, its deps and params, and every out file with its sha256 (DVC's
dvc.lock has ``cmd``, ``deps``/``outs`` with md5 and ``params``). A cached stage's outs are
restored (from ``.mlops/cache`` or from an MLflow run) only when its key is the one here, and
each file only when its sha256 is the one here: what sits in the cache folder or in the MLflow
experiment can supply bytes the repository already vouches for, nothing else.

A ``pipeline: {dvc: dvc.yaml}`` project gets ``mlops.lock`` too, never a written ``dvc.lock``:
that file is DVC's (md5 and ``.dir`` hashes of its own, read by ``dvc repro`` and ``dvc
status``), and a project keeps using DVC beside mlops-ci unchanged.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mlops_ci.errors import InputError
from mlops_ci.pipeline.cache import Manifest
from mlops_ci.pipeline.spec import STAGE_NAME, locate, normalised
from mlops_ci.records import write_text_atomic

SCHEMA = 1
SHA256 = re.compile(r"[0-9a-f]{64}")
HEADER = """\
# {name}: written by `mlops-ci train`; commit it with the code (as DVC's dvc.lock).
# A stage's outs are restored from .mlops/cache or an MLflow run only when its key is the one
# below, and each file only when its sha256 is the one below. Do not edit it by hand.
"""
_HINT = "fix it from git (`git checkout -- {name}`) or delete it: every stage then runs once"


def lock_path(config_file: Path) -> Path:
    """The lock file of a config: ``mlops.yaml`` → ``mlops.lock``, beside it."""
    return config_file.with_suffix(".lock")


@dataclass(frozen=True)
class Locked:
    """One stage as the lock file has it."""

    key: str
    command: str
    environment: str
    deps: Manifest
    params: dict[str, Any]
    outs: Manifest

    def as_yaml(self) -> dict[str, Any]:
        """In a stable order: keys as written here, files by path, params by name."""
        return {
            "key": self.key,
            "cmd": self.command,
            "environment": self.environment,
            "deps": [{"path": p, "sha256": s} for p, s in sorted(self.deps.items())],
            "params": dict(sorted(self.params.items())),
            "outs": [{"path": p, "sha256": s} for p, s in sorted(self.outs.items())],
        }


@dataclass
class LockFile:
    """The lock file read once per train, updated stage by stage."""

    path: Path
    stages: dict[str, Locked] = field(default_factory=dict)

    @property
    def shown(self) -> str:
        return self.path.name

    def entry(self, stage: str, key: str) -> Locked | None:
        """The stage's entry when its key is ``key``: the one case its outs may be restored."""
        found = self.stages.get(stage)
        return found if found is not None and found.key == key else None

    def put(self, stage: str, locked: Locked, order: list[str]) -> bool:
        """Set the stage's entry and write the file (stages in ``order``, those the pipeline no
        longer has dropped) when its text changes; True when written."""
        self.stages[stage] = locked
        self.stages = {n: self.stages[n] for n in order if n in self.stages}
        text = render(self.stages, self.shown)
        if self.path.is_file() and self.path.read_text("utf-8") == text:
            return False
        write_text_atomic(self.path, text)
        return True


def render(stages: dict[str, Locked], name: str = "mlops.lock") -> str:
    body = {"schema": SCHEMA, "stages": {n: s.as_yaml() for n, s in stages.items()}}
    text = yaml.safe_dump(body, sort_keys=False, default_flow_style=False, width=1000)
    return HEADER.format(name=name) + text


def read_lock(path: Path) -> LockFile:
    """The lock file at ``path`` (an empty one when absent); InputError names the file, line
    and key of anything that is not a lock file as ``render`` writes it."""
    if not path.is_file():
        return LockFile(path)
    name = path.name
    hint = _HINT.format(name=name)
    try:
        text = path.read_text("utf-8")
        data = yaml.safe_load(text)
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except (OSError, UnicodeDecodeError) as err:
        raise InputError(f"{name}: cannot be read: {err}", hint=hint) from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        line = mark.line + 1 if mark is not None else 1
        raise InputError(f"{name}:{line}: not valid YAML", hint=hint) from None

    def bad(keys: list[Any], what: str) -> InputError:
        dotted = ".".join(str(k) for k in keys)
        return InputError(f"{name}:{locate(node, keys)}: {dotted}: {what}", hint=hint)

    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        raise bad(["schema"], f"a lock file has `schema: {SCHEMA}` and `stages:`")
    stages = data.get("stages") or {}
    if not isinstance(stages, dict):
        raise bad(["stages"], "a mapping of stage name to its entry")
    out: dict[str, Locked] = {}
    for stage, body in stages.items():
        where = ["stages", stage]
        if not isinstance(stage, str) or not STAGE_NAME.fullmatch(stage):
            raise bad(where, "not a stage name")
        if not isinstance(body, dict):
            raise bad(where, "a stage's entry is a mapping (key, cmd, deps, params, outs)")
        key, command, environment = body.get("key"), body.get("cmd"), body.get("environment")
        if not isinstance(key, str) or not SHA256.fullmatch(key):
            raise bad([*where, "key"], "not a sha256 (64 hex digits)")
        if not isinstance(command, str) or not isinstance(environment, str):
            raise bad(where, "cmd and environment are text")
        params = body.get("params") or {}
        if not isinstance(params, dict):
            raise bad([*where, "params"], "a mapping of param name to value")
        out[stage] = Locked(
            key, command, environment, _files(body, [*where, "deps"], bad),
            {str(k): v for k, v in params.items()}, _files(body, [*where, "outs"], bad),
        )  # fmt: skip
    return LockFile(path, out)


def _files(body: dict[str, Any], where: list[Any], bad: Any) -> Manifest:
    """``[{path, sha256}, ...]`` as a manifest; every path relative, normalised and inside the
    project, every digest a sha256."""
    entries = body.get(where[-1]) or []
    if not isinstance(entries, list):
        raise bad(where, "a list of {path, sha256}")
    out: Manifest = {}
    for i, entry in enumerate(entries):
        path = entry.get("path") if isinstance(entry, dict) else None
        sha = entry.get("sha256") if isinstance(entry, dict) else None
        if not isinstance(path, str) or normalised(path) != path or path == ".":
            raise bad([*where, i, "path"], f"{path!r} is not a normalised path inside the project")
        if not isinstance(sha, str) or not SHA256.fullmatch(sha):
            raise bad([*where, i, "sha256"], "not a sha256 (64 hex digits)")
        out[path] = sha
    return out
