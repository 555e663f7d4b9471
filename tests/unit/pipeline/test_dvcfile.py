"""DVC's dvc.yaml read as it is; what it cannot take refused with its lines."""

from __future__ import annotations

from pathlib import Path

from mlops_ci.config.types import load_config
from mlops_ci.pipeline.run import load_pipeline
from mlops_ci.pipeline.spec import param_value
from tests.support.stages import HEAD, dvc_project, problems


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
