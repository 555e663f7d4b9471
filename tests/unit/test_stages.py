"""Pipeline stages: the checks of `validate` (one line with file, line and key each), the order,
DVC's dvc.yaml read as it is, `init --from-dvc`, and the cache key of a stage."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest

from mlops_ci.config.types import load_config
from mlops_ci.errors import ConfigError
from mlops_ci.pipeline.cache import StageCache, manifest_of
from mlops_ci.pipeline.run import _deps, _fits, load_pipeline, stage_key
from mlops_ci.pipeline.spec import param_value
from mlops_ci.registry import RunRecord
from mlops_ci.report.comparison import change_lines
from mlops_ci.steps.compare import what_changed
from tests.support.helpers import run_cli

HEAD = """\
version: 1
model: {name: staged}
train:
  params: {C: 1.0}
  outputs: {model: out/model.joblib}
evaluate: {data: data/test.csv, target: y}
"""


def project(tmp_path: Path, stages: str, files: tuple[str, ...] = ("raw.csv", "a.py")) -> Path:
    for name in files:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x\n")
    (tmp_path / "mlops.yaml").write_text(HEAD + "pipeline:\n  stages:\n" + textwrap.indent(
        textwrap.dedent(stages), "    "
    ))  # fmt: skip
    return tmp_path


def problems(tmp_path: Path) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_pipeline(load_config(tmp_path))
    return caught.value.problems


GOOD = """\
- name: train
  command: python train.py
  deps: [feat, a.py]
  params: [C]
  outs: [out/model.joblib]
- name: prepare
  command: python prep.py
  deps: [raw.csv]
  outs: [feat]
"""


def test_a_dag_is_ordered_by_its_files_and_the_training_stage_found(tmp_path: Path) -> None:
    pipeline = load_pipeline(load_config(project(tmp_path, GOOD)))
    assert pipeline is not None
    assert [s.name for s in pipeline.stages] == ["prepare", "train"]
    assert pipeline.training == "train" and pipeline.stage("train").upstream == ("prepare",)
    assert pipeline.producer("feat/x.csv") == pipeline.stage("prepare")
    assert pipeline.producer("raw.csv") is None


def test_unknown_dep_cycle_two_writers_and_outside_each_get_a_line(tmp_path: Path) -> None:
    found = problems(
        project(
            tmp_path,
            """\
            - name: a
              command: python a.py
              deps: [b_out, missing.csv]
              outs: [a_out, ../elsewhere]
            - name: b
              command: python b.py
              deps: [a_out]
              outs: [b_out, a_out/inner, out/model.joblib]
            """,
        )
    )
    assert found == [
        "mlops.yaml:12: pipeline.stages.0.outs.1: '../elsewhere' is outside the project folder "
        f"{tmp_path.resolve()}",
        "mlops.yaml:15: pipeline.stages.1.deps.0: 'a_out' is both a dep and an out of the stage",
        "mlops.yaml:16: pipeline.stages.1.outs.1: 'a_out/inner' is also written by stage 'a' "
        "('a_out'): one path, one stage",
        "mlops.yaml:11: pipeline.stages.0.deps.1: 'missing.csv' is neither in the project nor "
        "an out of a stage",
    ]
    cycle = problems(
        project(
            tmp_path,
            """\
            - name: a
              command: python a.py
              deps: [b_out]
              outs: [a_out]
            - name: b
              command: python b.py
              deps: [a_out]
              outs: [b_out, out/model.joblib]
            """,
        )
    )
    assert len(cycle) == 1 and cycle[0].startswith("mlops.yaml:")
    assert "form a cycle" in cycle[0]
    assert "stages a → b → a" in cycle[0] or "stages b → a → b" in cycle[0]


def test_no_training_stage_an_unknown_param_and_train_command_beside_stages(
    tmp_path: Path,
) -> None:
    found = problems(
        project(
            tmp_path,
            """\
            - name: a
              command: python a.py
              deps: [raw.csv]
              params: [C, lr]
              outs: [model.pkl]
            """,
        )
    )
    assert found == [
        "mlops.yaml:12: pipeline.stages.0.params.1: param 'lr' is not in train.params (C) and "
        "there is no params.yaml in .",
    ]
    (tmp_path / "params.yaml").write_text("lr: 0.1\n")
    assert problems(tmp_path) == [
        "mlops.yaml:5: train.outputs.model: no stage of mlops.yaml writes 'out/model.joblib'; "
        "the training stage is the one whose outs include it"
    ]
    text = (tmp_path / "mlops.yaml").read_text()
    (tmp_path / "mlops.yaml").write_text(text.replace("train:\n", "train:\n  command: x\n"))
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path)
    assert caught.value.problems == [
        "mlops.yaml:4: train.command: the pipeline's training stage has the command; remove "
        "train.command (or the pipeline)"
    ]


def test_validate_exits_2_with_the_stage_problem(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    project(tmp_path, GOOD.replace("[raw.csv]", "[raw.cvs]"))
    assert run_cli("validate", "-c", str(tmp_path)) == 2
    assert capsys.readouterr().err.splitlines()[0] == (
        "error: mlops.yaml:16: pipeline.stages.1.deps.0: 'raw.cvs' is neither in the project "
        "nor an out of a stage"
    )


# DVC's get-started pipeline as its docs show it (dvc.org "Get Started: Data Pipelines"),
# with its params.yaml.
DVC_YAML = """\
stages:
  prepare:
    cmd: python src/prepare.py data/data.xml
    deps:
    - data/data.xml
    - src/prepare.py
    params:
    - prepare.seed
    - prepare.split
    outs:
    - data/prepared
  featurize:
    cmd: python src/featurization.py data/prepared data/features
    deps:
    - data/prepared
    - src/featurization.py
    params:
    - featurize.max_features
    - featurize.ngrams
    outs:
    - data/features
  train:
    cmd: python src/train.py data/features model.pkl
    deps:
    - data/features
    - src/train.py
    params:
    - train.seed
    - train.n_est
    - train.min_split
    outs:
    - model.pkl
  evaluate:
    cmd: python src/evaluate.py model.pkl data/features
    deps:
    - data/features
    - model.pkl
    - src/evaluate.py
    metrics:
    - eval/metrics.json:
        cache: false
    plots:
    - eval/plots/images
"""
PARAMS_YAML = """\
prepare:
  split: 0.20
  seed: 20170428
featurize:
  max_features: 100
  ngrams: 1
train:
  seed: 20170428
  n_est: 50
  min_split: 0.01
"""


def dvc_project(tmp_path: Path) -> Path:
    for name in ("data/data.xml", "src/prepare.py", "src/featurization.py", "src/train.py"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x\n")
    (tmp_path / "src/evaluate.py").write_text("x\n")
    (tmp_path / "dvc.yaml").write_text(DVC_YAML)
    (tmp_path / "params.yaml").write_text(PARAMS_YAML)
    return tmp_path


def test_dvcs_own_example_is_taken_as_it_is(tmp_path: Path) -> None:
    dvc_project(tmp_path)
    (tmp_path / "mlops.yaml").write_text(
        HEAD.replace("out/model.joblib", "model.pkl") + "pipeline: {dvc: dvc.yaml}\n"
    )
    config = load_config(tmp_path)
    pipeline = load_pipeline(config)
    assert pipeline is not None and pipeline.training == "train"
    assert [s.name for s in pipeline.stages] == ["prepare", "featurize", "train", "evaluate"]
    evaluate = pipeline.stage("evaluate")
    assert evaluate.upstream == ("featurize", "train") and evaluate.shell
    assert evaluate.outs == ("eval/plots/images",) and evaluate.uncached_outs == (
        "eval/metrics.json",
    )
    assert param_value(config, pipeline.stage("train"), "train.n_est", {}) == 50
    assert param_value(config, pipeline.stage("prepare"), "prepare.split", {}) == 0.2


def test_foreach_templating_and_a_bad_dvc_key_are_refused_with_their_lines(
    tmp_path: Path,
) -> None:
    dvc_project(tmp_path)
    (tmp_path / "dvc.yaml").write_text(
        "stages:\n"
        "  build:\n"
        "    foreach: [us, uk]\n"
        "    do:\n"
        "      cmd: python train.py ${item}\n"
        "  train:\n"
        "    cmd: python t.py ${train.seed}\n"
        "  fit:\n"
        "    command: python t.py\n"
    )
    (tmp_path / "mlops.yaml").write_text(HEAD + "pipeline: {dvc: dvc.yaml}\n")
    assert problems(tmp_path) == [
        "dvc.yaml:3: stages.build.foreach: foreach stages are not supported: DVC expands them "
        "itself; write one stage per item",
        "dvc.yaml:7: stages.train: ${} templating is not supported; write the values in",
        "dvc.yaml:9: stages.fit.command: not a key of a DVC stage (always_changed, cmd, deps, "
        "desc, frozen, meta, metrics, outs, params, plots, wdir)",
        "dvc.yaml:9: stages.fit.cmd: required: a command, or a list of commands",
    ]


def test_init_from_dvc_writes_the_equivalent_stages(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dvc_project(tmp_path)
    assert run_cli("init", "--dir", str(tmp_path), "--from-dvc") == 0
    config = load_config(tmp_path)
    assert config.train.model_output == "model.pkl" and config.pipeline.dvc is None
    written = load_pipeline(config)
    (tmp_path / "in-place").mkdir()
    dvc_project(tmp_path / "in-place")
    (tmp_path / "in-place" / "mlops.yaml").write_text(
        HEAD.replace("out/model.joblib", "model.pkl") + "pipeline: {dvc: dvc.yaml}\n"
    )
    in_place = load_pipeline(load_config(tmp_path / "in-place"))
    assert written is not None and in_place is not None
    assert written.stages == in_place.stages  # the same stages, whichever way they are given
    assert run_cli("validate", "-c", str(tmp_path)) == 0


def test_a_stage_key_changes_with_content_never_with_mtime(tmp_path: Path) -> None:
    pipeline = load_pipeline(load_config(project(tmp_path, GOOD)))
    assert pipeline is not None
    prepare = pipeline.stage("prepare")

    def key() -> str:
        return stage_key(prepare, _deps(tmp_path, prepare.deps, {}, []), {}, "env")

    first = key()
    os.utime(tmp_path / "raw.csv", (1, 1))
    assert key() == first
    (tmp_path / "raw.csv").write_text("y\n")
    assert key() != first


def test_the_cache_restores_outs_and_leaves_identical_ones_alone(tmp_path: Path) -> None:
    (tmp_path / "feat" / "sub").mkdir(parents=True)
    (tmp_path / "feat" / "a.csv").write_text("1\n")
    (tmp_path / "feat" / "sub" / "b.csv").write_text("2\n")
    manifest = manifest_of(tmp_path, ["feat"])
    assert list(manifest) == ["feat/a.csv", "feat/sub/b.csv"]
    cache = StageCache(tmp_path / ".mlops" / "cache")
    cache.store(tmp_path, manifest)
    assert cache.has(manifest)
    assert cache.restore(tmp_path, ("feat",), manifest) is False  # already in place
    (tmp_path / "feat" / "a.csv").write_text("changed\n")
    (tmp_path / "feat" / "stray.csv").write_text("3\n")
    assert cache.restore(tmp_path, ("feat",), manifest) is True
    assert manifest_of(tmp_path, ["feat"]) == manifest


def test_what_changed_names_params_commit_and_the_stages_with_other_inputs() -> None:
    production = RunRecord(
        "p", "FINISHED",
        params={"C": "1.0", "stage.prepare.key": "a", "stage.train.key": "b",
                "stage.train.cached": "false", "prepare.split": "0.2"},
        tags={"mlops.git.commit": "1" * 40},
    )  # fmt: skip
    candidate = RunRecord(
        "c", "FINISHED",
        params={"C": "0.5", "stage.prepare.key": "a", "stage.train.key": "z",
                "stage.train.cached": "true", "prepare.split": "0.2"},
        tags={"mlops.git.commit": "2" * 40},
    )  # fmt: skip
    changes = what_changed(production, candidate)
    assert changes["params"] == {"C": ["1.0", "0.5"]} and changes["stages"] == ["train"]
    assert change_lines(changes) == [
        "**What changed** (production → candidate):",
        "- param `C`: `1.0` → `0.5`",
        "- code commit: `111111111111` → `222222222222`",
        "- pipeline stages with other inputs: train",
    ]
    assert change_lines(what_changed(production, production)) == [
        "What changed: no param, code commit or data fingerprint differs."
    ]
    assert what_changed(None, candidate) == {"unknown": True}


def test_a_record_naming_a_path_outside_the_stage_outs_is_never_restored(tmp_path: Path) -> None:
    pipeline = load_pipeline(load_config(project(tmp_path, GOOD)))
    assert pipeline is not None
    prepare, sha = pipeline.stage("prepare"), "a" * 64
    assert _fits(prepare, {"outs": {"feat/x.csv": sha}})
    for outs in (
        {"feat/../../etc/passwd": sha},  # leaves the project
        {"a.py": sha},  # a source file, not an out of the stage
        {"/etc/passwd": sha},
        {"feat/x.csv": "not-a-digest"},
    ):
        assert not _fits(prepare, {"outs": outs}), outs
