"""Projects with pipeline stages: stages in mlops.yaml, and DVC's get-started pipeline
(dvc.yaml and params.yaml) as its docs show it."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from mlops_ci.config.types import load_config
from mlops_ci.errors import ConfigError
from mlops_ci.pipeline.run import load_pipeline

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
