"""compare against the in-memory registry: the verdict against production, what it refuses,
slices and importance in the comparison."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from mlops_ci.config.types import Config, Rule
from mlops_ci.errors import GateFailed, InputError
from mlops_ci.evaluation.comparison import read_comparison
from mlops_ci.registry import RunRecord
from mlops_ci.report.comparison import change_lines
from mlops_ci.steps.compare import compare, what_changed
from mlops_ci.steps.register import register
from tests.support.fakes import InMemoryRegistry
from tests.support.runs import candidate_run, in_production, record_train
from tests.support.slices import NOT_WORSE, grouped_project, run_compare


def test_no_production_model_gives_no_baseline(
    config: Config, fake_registry: InMemoryRegistry
) -> None:
    run = candidate_run(fake_registry, config.root)
    result = compare(config, fake_registry, run.run_id)
    assert result.verdict == "no-baseline"
    assert result.production is None and result.significance is None
    assert result.candidate.metrics["accuracy"] == pytest.approx(0.95)
    statuses = {c.name: c.status for c in result.checks}
    assert statuses["f1_macro not worse than production (tolerance 0.005)"] == "skipped"
    assert statuses["accuracy ≥ 0.9"] == "pass"
    saved = json.loads((config.root / ".mlops" / "comparison.json").read_text())
    assert saved["verdict"] == "no-baseline" and saved["candidate"]["run_id"] == run.run_id
    assert "no-baseline" in (config.root / ".mlops" / "comparison.md").read_text()


def test_absolute_rule_fails_even_without_baseline(
    config: Config, fake_registry: InMemoryRegistry
) -> None:
    run = candidate_run(fake_registry, config.root, c=0.01)  # about 0.83 accuracy
    assert compare(config, fake_registry, run.run_id).verdict == "fail"


def test_equal_candidate_passes_against_production(
    config: Config, fake_registry: InMemoryRegistry
) -> None:
    version = in_production(fake_registry, config)
    run = candidate_run(fake_registry, config.root, c=10.0)
    result = compare(config, fake_registry, run.run_id)
    assert result.production is not None and result.production.version == version
    assert result.verdict == "pass", result.checks
    assert result.significance is not None and not result.significance.significantly_worse


def test_worse_candidate_fails_on_the_same_rows_and_is_not_registered(
    config: Config, fake_registry: InMemoryRegistry
) -> None:
    in_production(fake_registry, config)
    run = candidate_run(fake_registry, config.root, c=0.01)
    result = compare(config, fake_registry, run.run_id)
    assert result.verdict == "fail"
    assert result.production is not None
    assert result.candidate.metrics["f1_macro"] < result.production.metrics["f1_macro"] - 0.05
    failed = {c.name for c in result.checks if c.status == "fail"}
    assert "f1_macro not worse than production (tolerance 0.005)" in failed
    assert "f1_macro not significantly worse" in failed
    with pytest.raises(GateFailed, match="failed its comparison"):
        register(config, fake_registry, run.run_id)
    assert len(fake_registry.versions[config.model.name]) == 1  # only production's


def test_rule_naming_a_metric_nobody_has_is_an_error(
    config: Config, fake_registry: InMemoryRegistry
) -> None:
    rules = (*config.gate.rules, Rule(metric="latency_ms", max=20))
    bad = dataclasses.replace(config, gate=dataclasses.replace(config.gate, rules=rules))
    run = candidate_run(fake_registry, config.root)
    with pytest.raises(InputError, match=r"gate.rules.3.metric: 'latency_ms' is neither"):
        compare(bad, fake_registry, run.run_id)


def test_missing_evaluation_column_is_named(
    config: Config, fake_registry: InMemoryRegistry
) -> None:
    data = config.root / "data" / "test.csv"
    pd.read_csv(data).drop(columns=["species"]).to_csv(data, index=False)
    run = candidate_run(fake_registry, config.root)
    with pytest.raises(InputError, match=r"data/test.csv: missing column\(s\) 'species'"):
        compare(config, fake_registry, run.run_id)


def test_model_that_cannot_score_the_data_is_bad_input(
    config: Config, fake_registry: InMemoryRegistry
) -> None:
    data = config.root / "data" / "test.csv"
    pd.read_csv(data).drop(columns=["petal_width"]).to_csv(data, index=False)
    run = candidate_run(fake_registry, config.root)
    with pytest.raises(
        InputError, match="the candidate .* model was trained on column\\(s\\) petal_width,"
    ):
        compare(config, fake_registry, run.run_id)


def test_compare_and_register_refuse_to_act_after_a_failed_train(
    config: Config, fake_registry: InMemoryRegistry
) -> None:
    run = candidate_run(fake_registry, config.root)
    record_train(config, run.run_id)
    assert compare(config, fake_registry).candidate.run_id == run.run_id
    record_train(config, None, error="train.command exited with code 1: out of data")
    with pytest.raises(InputError, match="last `mlops-ci train` failed .*out of data"):
        compare(config, fake_registry)
    with pytest.raises(InputError, match="last `mlops-ci train` failed"):
        register(config, fake_registry, force=True)
    assert fake_registry.versions == {}
    # An explicit run is still the user's choice.
    assert compare(config, fake_registry, run.run_id).verdict == "no-baseline"


def test_a_changed_feature_set_is_compared_with_each_models_own_columns(
    config: Config, fake_registry: InMemoryRegistry
) -> None:
    train = pd.read_csv(config.root / "data" / "train.csv")
    three = ["sepal_length", "petal_length", "petal_width"]
    old = LogisticRegression(max_iter=1000).fit(train[three], train["species"])
    run = fake_registry.add_run(old)
    version = fake_registry.create_version(config.model.name, run, {}, "")
    fake_registry.set_alias(config.model.name, "production", version.version)
    candidate = candidate_run(fake_registry, config.root)  # all four columns
    result = compare(config, fake_registry, candidate.run_id)
    assert result.production is not None and result.verdict in ("pass", "fail")
    assert result.evaluation["feature_change"] == {"added": ["sepal_width"], "removed": []}
    from mlops_ci.report.comparison import markdown

    assert "Feature set changed: the candidate adds `sepal_width`" in markdown(result)

    test = pd.read_csv(config.root / "data" / "test.csv")
    test.drop(columns=["sepal_width"]).to_csv(config.root / "data" / "test.csv", index=False)
    with pytest.raises(
        InputError, match="the candidate .* model was trained on column\\(s\\) sepal_width, which"
    ):
        compare(config, fake_registry, candidate.run_id)


def test_model_task_must_say_what_the_model_is(
    config: Config, fake_registry: InMemoryRegistry
) -> None:
    from sklearn.linear_model import LinearRegression

    train = pd.read_csv(config.root / "data" / "train.csv")
    codes = train["species"].astype("category").cat.codes
    regressor = LinearRegression().fit(train.drop(columns=["species"]), codes)
    run = fake_registry.add_run(regressor)
    with pytest.raises(
        InputError, match="model.task is classification, but the candidate .* is a regressor"
    ):
        compare(config, fake_registry, run.run_id)


@pytest.mark.timeout(120)
def test_a_candidate_better_overall_but_worse_for_one_slice_is_refused(tmp_path: Path) -> None:
    config, cand, prod = grouped_project(tmp_path, NOT_WORSE + ", slice: all}")
    result = run_compare(config, cand, prod)
    assert result.candidate.metrics["accuracy"] == pytest.approx(0.925)
    assert result.production is not None
    assert result.production.metrics["accuracy"] == pytest.approx(0.85)
    assert result.verdict == "fail"
    failed = [c for c in result.checks if c.status == "fail"]
    assert [c.name for c in failed] == [
        "accuracy not worse than production (tolerance 0.02) in slice group=B"
    ]
    assert "0.7000 vs 1.0000" in failed[0].detail and "50 rows" in failed[0].detail
    by_slice = {s.value: s for s in result.slices}
    assert by_slice["A"].rows == 150 and by_slice["A"].candidate["accuracy"] == 1.0
    assert by_slice["B"].production == {"accuracy": 1.0}
    page = (config.root / ".mlops" / "comparison.md").read_text()
    assert "| B | 50 | 0.7000 | 1.0000 | -0.3000 (worse by 0.3000) 🔴 |" in page
    assert read_comparison(config.root) == result  # slices and importance survive the record


@pytest.mark.timeout(120)
def test_without_slice_all_the_same_candidate_passes(tmp_path: Path) -> None:
    config, cand, prod = grouped_project(tmp_path, NOT_WORSE + "}")
    result = run_compare(config, cand, prod)
    assert result.verdict == "pass", result.checks
    assert len(result.slices) == 2  # still shown, not judged


@pytest.mark.timeout(120)
def test_slices_under_the_minimum_are_not_judged_and_said_so(tmp_path: Path) -> None:
    config, cand, prod = grouped_project(tmp_path, NOT_WORSE + ", slice: all}", min_rows=60)
    result = run_compare(config, cand, prod)
    assert result.verdict == "pass", result.checks
    (held,) = [c for c in result.checks if c.name.endswith("in every slice")]
    assert held.status == "pass" and "1 slice(s) under 60 rows not judged" in held.detail


@pytest.mark.timeout(120)
def test_train_records_importance_and_compare_reuses_it(config: Config) -> None:
    """The iris example: both models' importance in the comparison, from train's record when
    it has one with the same settings (here the fake registry has none: computed now)."""
    reg = InMemoryRegistry()
    train = pd.read_csv(config.root / "data" / "train.csv")
    model = LogisticRegression(max_iter=1000).fit(train.drop(columns=["species"]), train["species"])
    run = reg.add_run(model, {"cv_accuracy": 0.95})
    result = compare(config, reg, run.run_id)
    imp = result.importance["candidate"]
    assert imp.settings.metric == config.gate.primary_metric and imp.rows == 60
    assert set(imp.means) == set(train.columns) - {"species"}
    page = (config.root / ".mlops" / "comparison.md").read_text()
    assert "#### Why: permutation importance" in page and "xychart-beta" in page
    assert "#### Slices" in page  # the example slices by sepal_length


@pytest.mark.timeout(120)
def test_a_model_importance_cannot_explain_keeps_its_verdict_and_says_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlops_ci.errors import InputError
    from mlops_ci.steps import compare as compare_module

    def fails(*_: Any) -> Any:
        raise InputError("data/test.csv: permutation importance of the candidate: boom")

    monkeypatch.setattr(compare_module, "permutation", fails)
    config, cand, prod = grouped_project(tmp_path, NOT_WORSE + ", slice: all}")
    result = run_compare(config, cand, prod)
    assert result.verdict == "fail" and result.importance == {}
    assert set(result.evaluation["importance_failed"]) == {"candidate", "production"}
    page = (config.root / ".mlops" / "comparison.md").read_text()
    assert "> Permutation importance of the candidate: data/test.csv: " in page


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
