"""init: a valid starter whose gate holds a rule and whose commented keys are the schema's
defaults, never over an existing file; the .gitignore lines appended once, never rewritten;
--from-dvc writes the same stages."""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
import yaml

from mlops_ci.config.file import schema
from mlops_ci.config.types import load_config
from mlops_ci.errors import InputError
from mlops_ci.pipeline.run import load_pipeline
from mlops_ci.steps.init import IGNORE_HEADER, ignore_lines, merge_gitignore
from tests.support.helpers import run_cli
from tests.support.stages import HEAD, dvc_project

pytestmark = pytest.mark.timeout(60)

STARTER = resources.files("mlops_ci.config").joinpath("templates/mlops.yaml").read_text("utf-8")
# `key: value` on a line, commented (`  # key: value`) or not; a list item or prose is neither.
COMMENTED = re.compile(r"^( *)#( +)([a-z_][a-z0-9_]*):(.*)$")
ACTIVE = re.compile(r"^( *)([a-z_][a-z0-9_]*):(.*)$")
NOT_GIVEN = object()


def commented_keys(text: str) -> list[tuple[int, list[str], Any]]:
    """Each commented ``key: value`` of ``text``: its line, key path and value (NOT_GIVEN for
    a mapping's head). Indentation gives the path: ``  # key`` under ``train:`` is train.key,
    ``#   key`` under ``# gate:`` is gate.key (the ``#`` takes one column of its own)."""
    found: list[tuple[int, list[str], Any]] = []
    heads: list[tuple[int, str]] = []  # (indent, key) of the mappings the line is inside
    for number, line in enumerate(text.splitlines(), 1):
        commented = COMMENTED.match(line)
        active = ACTIVE.match(line)
        if commented:
            indent = len(commented[1]) + len(commented[2]) - 1
            key, rest = commented[3], commented[4]
        elif active:
            indent, key, rest = len(active[1]), active[2], active[3]
        else:
            continue
        while heads and heads[-1][0] >= indent:
            heads.pop()
        path = [k for _, k in heads] + [key]
        value = re.sub(r"(^|\s+)#.*$", "", rest).strip()
        if not value:
            heads.append((indent, key))
        if commented:
            found.append((number, path, yaml.safe_load(value) if value else NOT_GIVEN))
    return found


def schema_at(path: list[str]) -> dict[str, Any]:
    sub = schema()
    for key in path:
        assert key in sub.get("properties", {}), f"{'.'.join(path)}: not a key of the schema"
        sub = sub["properties"][key]
    return sub


def test_every_commented_value_of_the_starter_is_the_schema_default() -> None:
    found = commented_keys(STARTER)
    assert len(found) > 60, "the parser found the starter's commented keys"
    wrong = []
    for number, path, value in found:
        sub = schema_at(path)  # the key exists
        if value is NOT_GIVEN:
            continue  # a mapping's head (`# gate:`) or a list shown by example (`# stages:`)
        assert "default" in sub, f"line {number}: {'.'.join(path)} has no default to show"
        if value != sub["default"] or type(value) is not type(sub["default"]):
            wrong.append(f"line {number}: {'.'.join(path)}: {value!r} != {sub['default']!r}")
    assert not wrong, wrong


def test_the_parser_sees_a_wrong_default() -> None:
    wrong = STARTER.replace("#   onnx: auto ", "#   onnx: true ")
    (hit,) = [(p, v) for _, p, v in commented_keys(wrong) if p == ["package", "onnx"]]
    assert hit[1] is True and schema_at(["package", "onnx"])["default"] == "auto"
    nested = [p for _, p, _ in commented_keys(STARTER)]
    assert ["evaluate", "importance", "max_seconds"] in nested
    assert ["train", "outputs", "model"] in nested and ["gate", "primary_metric"] in nested


def test_init_writes_a_valid_starter_with_an_active_gate_rule(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_cli("init", "--dir", str(tmp_path)) == 0
    config = load_config(tmp_path)
    assert config.model.name == "my-model"
    (rule,) = config.gate.rules
    assert rule.metric == config.gate.primary_metric and rule.must == "not_worse_than_production"
    assert config.package.onnx == "auto"
    capsys.readouterr()
    assert run_cli("validate", "-c", str(tmp_path)) == 2  # the paths it reads are not there
    err, root = capsys.readouterr().err.splitlines(), tmp_path.resolve()
    assert err == [
        f"error: mlops.yaml:16: train.inputs.0: 'train.py' does not exist in {root} "
        "(train fingerprints its inputs before it runs)",
        f"error: mlops.yaml:36: evaluate.data: 'data/test.csv' does not exist in {root}, "
        "and no pipeline stage writes it",
    ]
    (tmp_path / "train.py").write_text("")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "test.csv").write_text("x,label\n1,0\n")
    assert run_cli("validate", "-c", str(tmp_path)) == 0
    assert run_cli("init", "--dir", str(tmp_path)) == 2
    assert "already exists" in capsys.readouterr().err


def test_init_appends_the_missing_gitignore_lines_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ignore = tmp_path / ".gitignore"
    ignore.write_text("venv/\n/outputs")  # the user's, with no newline at its end
    assert run_cli("init", "--dir", str(tmp_path)) == 0
    assert f"added .mlops/ to {ignore}" in capsys.readouterr().out
    assert ignore.read_text() == f"venv/\n/outputs\n{IGNORE_HEADER}\n.mlops/\n"
    assert run_cli("init", "--dir", str(tmp_path), "--force") == 0
    assert ignore.read_text() == f"venv/\n/outputs\n{IGNORE_HEADER}\n.mlops/\n"
    assert "to .gitignore" not in capsys.readouterr().out
    fresh = tmp_path / "fresh"
    assert run_cli("init", "--dir", str(fresh)) == 0
    assert (fresh / ".gitignore").read_text() == f"{IGNORE_HEADER}\n.mlops/\n/outputs/\n"
    kept = tmp_path / "kept"
    kept.mkdir()
    (kept / "mlops.yaml").write_text("version: 1\n")
    assert run_cli("init", "--dir", str(kept), "--ci", "github") == 0
    assert not (kept / ".gitignore").exists(), "a kept mlops.yaml: its outputs are not known"


def test_gitignore_lines_follow_the_outputs_and_spare_what_is_read() -> None:
    assert ignore_lines(STARTER) == [".mlops/", "/outputs/"]
    data = {
        "version": 1,
        "model": {"name": "m"},
        "train": {
            "inputs": ["train.py", "models/base.csv"],  # read beside the model: not ignored
            "outputs": {"model": "models/m.joblib", "metrics": "../elsewhere.json"},
        },
        "evaluate": {"data": "data/test.csv", "target": "y"},
    }
    assert ignore_lines(yaml.safe_dump(data)) == [".mlops/", "/models/m.joblib"]


def test_merge_gitignore_keeps_what_is_there(tmp_path: Path) -> None:
    ignore = tmp_path / ".gitignore"
    assert merge_gitignore(ignore, [".mlops/", "/outputs/"]) == [".mlops/", "/outputs/"]
    ignore.write_text("# mine\n.mlops\noutputs/\n*.pyc\n")
    assert merge_gitignore(ignore, [".mlops/", "/outputs/", "/model.pkl"]) == ["/model.pkl"]
    assert ignore.read_text() == f"# mine\n.mlops\noutputs/\n*.pyc\n{IGNORE_HEADER}\n/model.pkl\n"
    assert merge_gitignore(ignore, ["/model.pkl"]) == []
    (tmp_path / "odd" / ".gitignore").mkdir(parents=True)
    with pytest.raises(InputError, match="cannot be added to"):
        merge_gitignore(tmp_path / "odd" / ".gitignore", [".mlops/"])


def test_init_from_dvc_writes_the_equivalent_stages(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dvc_project(tmp_path)
    assert run_cli("init", "--dir", str(tmp_path), "--from-dvc") == 0
    config = load_config(tmp_path)
    assert config.train.model_output == "model.pkl" and config.pipeline.dvc is None
    assert "/model.pkl" in (tmp_path / ".gitignore").read_text().splitlines()
    written = load_pipeline(config)
    (tmp_path / "in-place").mkdir()
    dvc_project(tmp_path / "in-place")
    (tmp_path / "in-place" / "mlops.yaml").write_text(
        HEAD.replace("out/model.joblib", "model.pkl") + "pipeline: {dvc: dvc.yaml}\n"
    )
    in_place = load_pipeline(load_config(tmp_path / "in-place"))
    assert written is not None and in_place is not None
    assert written.stages == in_place.stages  # the same stages, whichever way they are given
    (tmp_path / "data" / "test.csv").write_text("x,label\n1,0\n")
    assert run_cli("validate", "-c", str(tmp_path)) == 0
