"""compare, register and promote against the in-memory registry (no MLflow)."""

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
from mlops_ci.evaluation.comparison import ModelScore
from mlops_ci.evaluation.rules import rule_checks
from mlops_ci.registry import RunRecord
from mlops_ci.steps.compare import compare
from mlops_ci.steps.promote import promote
from mlops_ci.steps.register import register
from tests.support.fakes import InMemoryRegistry


def fit(project: Path, c: float) -> Any:
    train = pd.read_csv(project / "data" / "train.csv")
    return LogisticRegression(C=c, max_iter=1000).fit(
        train.drop(columns=["species"]), train["species"]
    )


def candidate_run(reg: InMemoryRegistry, project: Path, c: float = 1.0) -> RunRecord:
    return reg.add_run(fit(project, c), {"cv_accuracy": 0.95}, **{"mlops.git.commit": "abc"})


def in_production(reg: InMemoryRegistry, config: Config, c: float = 1.0) -> str:
    run = candidate_run(reg, config.root, c)
    version = reg.create_version(config.model.name, run, {"mlops.compare.verdict": "pass"}, "")
    reg.set_alias(config.model.name, "production", version.version)
    return version.version


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


def test_register_needs_a_comparison_unless_forced(
    config: Config, fake_registry: InMemoryRegistry
) -> None:
    run = candidate_run(fake_registry, config.root)
    with pytest.raises(InputError, match="no comparison for run"):
        register(config, fake_registry, run.run_id)
    forced = register(config, fake_registry, run.run_id, force=True)
    tags = fake_registry.get_version(config.model.name, forced.version).tags
    assert tags["mlops.forced"] == "true" and tags["mlops.compare.verdict"] == "forced"


def test_register_tags_lineage_and_is_idempotent(
    config: Config, fake_registry: InMemoryRegistry
) -> None:
    run = candidate_run(fake_registry, config.root)
    compare(config, fake_registry, run.run_id)
    first = register(config, fake_registry)
    again = register(config, fake_registry)
    assert (first.version, first.existing, again.version, again.existing) == ("1", False, "1", True)
    tags = fake_registry.get_version(config.model.name, "1").tags
    assert tags["mlops.git.commit"] == "abc"
    assert tags["mlops.compare.verdict"] == "no-baseline"
    assert float(tags["mlops.metric.accuracy"]) == pytest.approx(0.95)
    assert fake_registry.aliases[config.model.name]["candidate"] == "1"


def test_promote_records_who_why_and_the_replaced_version(
    config: Config, fake_registry: InMemoryRegistry
) -> None:
    old = in_production(fake_registry, config)
    run = candidate_run(fake_registry, config.root, c=10.0)
    compare(config, fake_registry, run.run_id)
    new = register(config, fake_registry).version
    result = promote(config, fake_registry, "@candidate", by="ada", reason="better recall")
    assert (result.previous, result.version) == (old, new)
    tags = fake_registry.get_version(config.model.name, new).tags
    assert tags["mlops.promoted.production.by"] == "ada"
    assert tags["mlops.promoted.production.reason"] == "better recall"
    assert (
        fake_registry.get_version(config.model.name, old).tags[
            "mlops.replaced.production.by_version"
        ]
        == new
    )
    assert fake_registry.aliases[config.model.name]["production"] == new


def test_promote_refuses_unknown_alias_and_unpassed_versions(
    config: Config, fake_registry: InMemoryRegistry
) -> None:
    with pytest.raises(InputError, match="there is no model 'iris-classifier'"):
        promote(config, fake_registry, "@nope", by="a", reason="r")
    run = candidate_run(fake_registry, config.root)
    register(config, fake_registry, run.run_id, force=True)
    with pytest.raises(InputError, match="no alias 'nope'"):
        promote(config, fake_registry, "@nope", by="a", reason="r")
    with pytest.raises(GateFailed, match="verdict 'forced'"):
        promote(config, fake_registry, "1", by="a", reason="r")
    assert promote(config, fake_registry, "1", by="a", reason="r", force=True).version == "1"


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


@pytest.mark.parametrize(
    ("rule", "cand", "prod", "status"),
    [
        (Rule("f1_macro", must="better_than_production", tolerance=0.01), 0.905, 0.90, "fail"),
        (Rule("f1_macro", must="better_than_production", tolerance=0.01), 0.92, 0.90, "pass"),
        (Rule("f1_macro", min_relative_change=0.05), 0.94, 0.90, "fail"),
        (Rule("f1_macro", min_relative_change=0.05), 0.95, 0.90, "pass"),
        (Rule("mae", min_absolute_change=-0.1), 1.05, 1.0, "pass"),  # lower is better
        (Rule("mae", min_absolute_change=-0.1), 1.2, 1.0, "fail"),
        (Rule("loss", must="not_worse_than_production", greater_is_better=False), 0.9, 1.0, "pass"),
        (Rule("latency_p99_ms", max_increase=0.25), 1.25, 1.0, "pass"),
        (Rule("latency_p99_ms", max_increase=0.25), 1.26, 1.0, "fail"),
        (Rule("latency_p99_ms", max_increase=0.25), 0.5, 1.0, "pass"),  # faster is fine
        (Rule("rows_per_s", max_decrease=0.2), 800.0, 1000.0, "pass"),
        (Rule("rows_per_s", max_decrease=0.2), 790.0, 1000.0, "fail"),
        (Rule("rows_per_s", min_relative_change=-0.2), 790.0, 1000.0, "fail"),  # more is better
        (Rule("peak_rss_mb", must="not_worse_than_production"), 101.0, 100.0, "fail"),
    ],
)
def test_rules_against_production_follow_the_metric_direction(
    rule: Rule, cand: float, prod: float, status: str
) -> None:
    run = RunRecord("r", "FINISHED")
    checks = rule_checks(
        0,
        rule,
        run,
        ModelScore("candidate", "r", None, {rule.metric: cand}),
        ModelScore("production", "p", "1", {rule.metric: prod}),
        None,
    )
    assert [c.status for c in checks] == [status]


def test_a_rule_check_says_the_gap_once_with_its_direction() -> None:
    """rmse grew: the check shows +gap and 'worse by', never the directional -gap."""
    checks = rule_checks(
        0,
        Rule("rmse", must="not_worse_than_production", tolerance=0.005),
        RunRecord("r", "FINISHED"),
        ModelScore("candidate", "r", None, {"rmse": 121766.1530}),
        ModelScore("production", "p", "1", {"rmse": 118698.0}),
        None,
    )
    assert [c.detail for c in checks] == [
        "121766.1530 vs 118698.0000: Δ +3068.1530, worse by 3068.1530; "
        "allowed: worse by at most 0.005"
    ]
    cost = rule_checks(
        0,
        Rule("latency_p99_ms", max_increase=0.25),
        RunRecord("r", "FINISHED"),
        ModelScore("candidate", "r", None, {}, {"latency_p99_ms": 1.31}),
        ModelScore("production", "p", "1", {}, {"latency_p99_ms": 1.0}),
        None,
    )
    assert cost[0].status == "fail" and cost[0].detail == (
        "1.3100 vs 1.0000: Δ +31.0 %, worse by 31.0 %; allowed: an increase of at most 25.0 %"
    )


def record_train(config: Config, run_id: str | None, error: str | None = None) -> None:
    """.mlops/train.json as `mlops-ci train` leaves it after a success or a failure."""
    from mlops_ci.records import JobFolder, write_json_atomic

    record = {"status": "failed", "run_id": None, "error": error} if error else {"run_id": run_id}
    write_json_atomic(JobFolder(config.root).train, {"status": "finished", **record})


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


def test_forced_register_takes_the_run_just_trained_not_the_stale_comparison(
    config: Config, fake_registry: InMemoryRegistry
) -> None:
    in_production(fake_registry, config)
    worse = candidate_run(fake_registry, config.root, c=0.01)
    record_train(config, worse.run_id)
    assert compare(config, fake_registry).verdict == "fail"
    latest = candidate_run(fake_registry, config.root, c=2.0)
    record_train(config, latest.run_id)
    with pytest.raises(InputError, match=f"comparison.json is of run {worse.run_id}, not of run "):
        register(config, fake_registry)
    forced = register(config, fake_registry, force=True)
    assert forced.run_id == latest.run_id and forced.forced and forced.verdict == "forced"
    tags = fake_registry.get_version(config.model.name, forced.version).tags
    assert tags["mlops.run_id"] == latest.run_id and tags["mlops.forced"] == "true"
    assert "mlops.metric.f1_macro" not in tags  # the stale comparison's metrics are not its own


def test_forced_register_after_a_failed_comparison_of_the_same_run_says_fail(
    config: Config, fake_registry: InMemoryRegistry
) -> None:
    in_production(fake_registry, config)
    worse = candidate_run(fake_registry, config.root, c=0.01)
    record_train(config, worse.run_id)
    compare(config, fake_registry)
    forced = register(config, fake_registry, force=True)
    assert (forced.run_id, forced.verdict, forced.forced) == (worse.run_id, "fail", True)


def test_report_says_when_its_comparison_is_not_the_last_train(
    config: Config, fake_registry: InMemoryRegistry
) -> None:
    from mlops_ci.steps.report import report

    run = candidate_run(fake_registry, config.root)
    record_train(config, run.run_id)
    compare(config, fake_registry)
    assert "⚠️" not in report(config, None, "ci").markdown
    record_train(config, None, error="exited with code 1: boom")
    text = report(config, None, "ci").markdown
    assert (
        f"failed (exited with code 1: boom); this report shows the comparison of run `{run.run_id}`"
        in text
    )


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


@pytest.mark.parametrize(
    ("production", "candidate", "status"),
    [
        (0.95, 0.9451, "pass"),
        (0.95, 0.9449, "fail"),
        (0.10, 0.0951, "pass"),
        (0.10, 0.0949, "fail"),
    ],
)
def test_the_tolerance_is_absolute_whatever_the_scale(
    production: float, candidate: float, status: str
) -> None:
    """tolerance 0.005 means 0.005 of the metric, at any scale: 0.9451 vs 0.95 passes (read as
    relative, 0.5 % of 0.95 = 0.00475, it would fail) and 0.0949 vs 0.10 fails."""
    from mlops_ci.config.types import Rule
    from mlops_ci.evaluation.comparison import ModelScore
    from mlops_ci.evaluation.rules import rule_checks
    from mlops_ci.registry import RunRecord

    rule = Rule(metric="accuracy", must="not_worse_than_production", tolerance=0.005)
    run = RunRecord("r1", "FINISHED")
    (check,) = rule_checks(
        0,
        rule,
        run,
        ModelScore("candidate", "r1", None, {"accuracy": candidate}),
        ModelScore("production", "r0", "1", {"accuracy": production}),
        None,
    )
    assert check.status == status, check
