"""Why the candidate decides differently: slices (and the slice gate) and permutation importance."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.inspection import permutation_importance
from sklearn.linear_model import LogisticRegression

from mlops_ci.config.types import Config, load_config
from mlops_ci.evaluation.comparison import read_comparison
from mlops_ci.evaluation.data import load_evaluation
from mlops_ci.evaluation.importance import Settings, groups_of, permutation
from mlops_ci.evaluation.slices import MISSING, OTHER, cut
from mlops_ci.steps.compare import compare
from tests.support.fakes import InMemoryRegistry

pytestmark = pytest.mark.timeout(120)


class Lookup:
    """A model that answers a fixed label per row id (the feature ``rid``)."""

    def __init__(self, answers: dict[int, int]) -> None:
        self.answers = answers

    def predict(self, features: Any) -> Any:
        return np.array([self.answers[int(r)] for r in features["rid"]])


def grouped_project(tmp_path: Path, rule: str, min_rows: int = 30) -> tuple[Config, Lookup, Lookup]:
    """200 rows in groups A (150) and B (50). Production: 30 mistakes in A, none in B (0.85).
    Candidate: none in A, 15 in B (0.925): better on average, worse for group B."""
    rid = np.arange(200)
    group = np.where(rid < 150, "A", "B")
    label = rid % 2
    (tmp_path / "data").mkdir()
    pd.DataFrame({"rid": rid, "group": group, "label": label}).to_csv(
        tmp_path / "data" / "test.csv", index=False
    )
    (tmp_path / "mlops.yaml").write_text(
        "version: 1\nmodel: {name: grouped}\ntrain: {command: python train.py}\n"
        "evaluate: {data: data/test.csv, target: label, features: [rid], metrics: [accuracy],"
        " slices: [group]}\n"
        f"gate:\n  min_slice_rows: {min_rows}\n  rules:\n    - {rule}\n"
    )
    production = {int(r): int(label[r] if not (r < 30) else 1 - label[r]) for r in rid}
    candidate = {int(r): int(label[r] if not (150 <= r < 165) else 1 - label[r]) for r in rid}
    return load_config(tmp_path), Lookup(candidate), Lookup(production)


def run_compare(config: Config, candidate: Lookup, production: Lookup) -> Any:
    reg = InMemoryRegistry()
    prod_run = reg.add_run(production)
    version = reg.create_version(config.model.name, prod_run, {}, "")
    reg.set_alias(config.model.name, "production", version.version)
    run = reg.add_run(candidate)
    return compare(config, reg, run.run_id)


NOT_WORSE = "{metric: accuracy, must: not_worse_than_production, tolerance: 0.02"


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


def test_without_slice_all_the_same_candidate_passes(tmp_path: Path) -> None:
    config, cand, prod = grouped_project(tmp_path, NOT_WORSE + "}")
    result = run_compare(config, cand, prod)
    assert result.verdict == "pass", result.checks
    assert len(result.slices) == 2  # still shown, not judged


def test_slices_under_the_minimum_are_not_judged_and_said_so(tmp_path: Path) -> None:
    config, cand, prod = grouped_project(tmp_path, NOT_WORSE + ", slice: all}", min_rows=60)
    result = run_compare(config, cand, prod)
    assert result.verdict == "pass", result.checks
    (held,) = [c for c in result.checks if c.name.endswith("in every slice")]
    assert held.status == "pass" and "1 slice(s) under 60 rows not judged" in held.detail


def test_slice_all_needs_slices_and_an_evaluated_metric(tmp_path: Path) -> None:
    from mlops_ci.errors import ConfigError

    config, _, _ = grouped_project(tmp_path, NOT_WORSE + ", slice: all}")
    text = config.path.read_text()
    config.path.write_text(
        text.replace(" slices: [group]", "").replace("accuracy, must", "f1, must")
    )
    with pytest.raises(ConfigError) as err:
        load_config(tmp_path)
    joined = "\n".join(err.value.problems)
    assert "slice: all needs a metric of evaluate.metrics" in joined
    assert "evaluate.slices names no column" in joined


def test_numeric_columns_are_cut_in_quantiles_text_ones_by_value() -> None:
    frame = pd.DataFrame(
        {
            "x": [1.0, 2, 3, 4, 5, 6, 7, 8, np.nan],
            "c": ["a", "a", "a", "b", "b", "c", "d", None, "e"],
        }
    )
    found = {(s.column, s.value): list(s.rows) for s in cut(frame, bins=4, most=3)}
    numeric = [v for c, v in found if c == "x"]
    assert len(numeric) == 5 and numeric[-1] == MISSING
    assert sum(len(found["x", v]) for v in numeric) == 9
    assert found["c", "a"] == [0, 1, 2] and found["c", "b"] == [3, 4]
    assert found["c", OTHER] == [5, 6, 8] and found["c", MISSING] == [7]


def test_importance_equals_scikit_learns_on_a_fixed_seed(config: Config) -> None:
    train = pd.read_csv(config.root / "data" / "train.csv")
    model = LogisticRegression(C=0.3, max_iter=1000).fit(
        train.drop(columns=["species"]), train["species"]
    )
    data = load_evaluation(config)
    settings = Settings("classification", "f1_macro", repeats=7, sample_rows=10_000, seed=3)
    ours = permutation(model, data, settings, "candidate")
    theirs = permutation_importance(
        model, data.features, data.target, scoring="f1_macro", n_repeats=7, random_state=3
    )
    assert ours.rows == data.rows
    assert list(ours.means) == list(data.features.columns)
    assert list(ours.means.values()) == pytest.approx(list(theirs.importances_mean))
    assert list(ours.stds.values()) == pytest.approx(list(theirs.importances_std))
    assert max(ours.means, key=ours.means.__getitem__) in ("petal_length", "petal_width")

    smaller = dataclasses.replace(settings, sample_rows=25)
    once, again = (permutation(model, data, smaller, "candidate") for _ in range(2))
    assert once.rows == 25 and once == again  # a seeded sample: the same figures each run


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


class Slow:
    """A model whose every scoring takes 10 ms (its label: the sign of x0)."""

    def predict(self, features: Any) -> Any:
        import time

        time.sleep(0.01)
        return (features["x0"].to_numpy() > 0).astype(int)


def _wide(columns: int = 30, rows: int = 100) -> Any:
    from mlops_ci.evaluation.data import EvaluationData

    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        rng.normal(size=(rows, columns)), columns=[f"x{i}" for i in range(columns)]
    )
    return EvaluationData("wide.csv", "-", frame, pd.Series((frame["x0"] > 0).astype(int)))


def test_importance_keeps_to_its_budget_and_says_what_it_lowered() -> None:
    """30 features x 5 repeats x 10 ms is 1.5 s: a 0.5 s budget takes 1 repeat; a 0.1 s budget
    shuffles neighbouring features in groups. Unbounded, every feature with 5 repeats."""
    data = _wide()
    full = permutation(Slow(), data, Settings("classification", "accuracy", 5, 2000, 0, 0), "c")
    assert full.plan is not None and full.plan.note == "" and full.plan.repeats == 5
    assert full.plan.seconds > 1.5 and len(full.means) == 30
    assert max(full.means, key=full.means.__getitem__) == "x0"

    fewer = permutation(Slow(), data, Settings("classification", "accuracy", 5, 2000, 0, 0.5), "c")
    assert fewer.plan is not None and fewer.plan.repeats == 1 and len(fewer.means) == 30
    assert "1 repeat(s) instead of 5" in fewer.plan.note and "max_seconds 0.5 s" in fewer.plan.note
    assert fewer.plan.seconds < 1.0 < fewer.plan.estimate_s
    assert max(fewer.means, key=fewer.means.__getitem__) == "x0"

    grouped = permutation(
        Slow(), data, Settings("classification", "accuracy", 5, 2000, 0, 0.1), "c"
    )
    assert grouped.plan is not None and grouped.plan.groups < 30
    assert f"in {grouped.plan.groups} groups" in grouped.plan.note
    assert len(grouped.means) == grouped.plan.groups and grouped.plan.seconds < 0.6
    first = max(grouped.means, key=grouped.means.__getitem__)
    assert first.startswith("x0 … ") and first.endswith(" features)")


@pytest.mark.parametrize(("columns", "count"), [(30, 7), (30, 6), (10, 3), (250, 171), (5, 5)])
def test_groups_are_as_many_as_the_plan_says_and_cover_every_column_once(
    columns: int, count: int
) -> None:
    """30 columns in 7 groups is 5,5,4,4,4,4,4 (ceil-sized chunks made 6, and the plan said 7)."""
    names = [f"x{i}" for i in range(columns)]
    groups = groups_of(names, count)
    assert len(groups) == count
    assert [c for part in groups.values() for c in part] == names
    sizes = [len(part) for part in groups.values()]
    assert max(sizes) - min(sizes) <= 1


def test_importance_reports_its_progress_feature_by_feature() -> None:
    heard: list[tuple[int, int]] = []
    settings = Settings("classification", "accuracy", 2, 2000, 0, 0)
    found = permutation(
        Slow(), _wide(columns=25), settings, "c", progress=lambda d, t: heard.append((d, t))
    )
    assert heard[0] == (0, 25) and heard[-1] == (25, 25) and len(heard) >= 5
    assert [d for d, _ in heard] == sorted(d for d, _ in heard) and len(found.means) == 25
