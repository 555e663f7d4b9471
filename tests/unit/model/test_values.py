"""What a bool and a category take, the same words for a refusal on every path."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mlops_ci.model.values import REFUSED, bool_value, category_value, parse, refusal

pytestmark = pytest.mark.timeout(60)


@pytest.mark.parametrize(
    ("value", "said"),
    [
        (True, 1.0),
        (False, 0.0),
        (np.bool_(True), 1.0),
        ("True", 1.0),  # pandas writes True/False
        ("false", 0.0),
        (" TRUE ", 1.0),
        ("1", 1.0),
        ("0", 0.0),
        (1, 1.0),
        (0.0, 0.0),
        (np.int64(1), 1.0),
    ],
)
def test_a_bool_takes_true_false_in_any_spelling_and_one_zero(value: object, said: float) -> None:
    assert bool_value(value) == said


@pytest.mark.parametrize("value", [None, "", float("nan")])
def test_a_missing_bool_is_nan(value: object) -> None:
    said = bool_value(value)
    assert said is not None and math.isnan(said)


@pytest.mark.parametrize("value", ["yes", "maybe", "t", 2, -1, 0.5, "1.0", [True], {}])
def test_anything_else_is_no_bool(value: object) -> None:
    assert bool_value(value) is None


def test_a_category_value_is_cast_to_its_categories_type() -> None:
    assert category_value("2", int) == 2 and category_value(2.0, int) == 2
    assert category_value(" 3 ", int) == 3
    assert category_value(1, str) == "1" and category_value(1.0, str) == "1"
    assert category_value(1.5, str) == "1.5"
    assert category_value("2.5", float) == 2.5 and category_value(2, float) == 2.0
    assert category_value(np.int64(4)) == 4 and type(category_value(np.int64(4))) is int
    # outside the categories' type it stays as given: the model scores it as it would itself
    assert category_value("purple", int) == "purple"
    assert category_value(None, str) is None and category_value("", int) is None
    for bad in (True, [1], {"a": 1}, float("inf")):
        assert category_value(bad) is REFUSED


def test_parse_gives_the_request_parsers_form_and_the_refused_rows() -> None:
    flags, bad = parse("bool", (), ["True", "no", None, 1])
    assert bad.tolist() == [False, True, False, False]
    assert flags[[0, 3]].tolist() == [1.0, 1.0] and np.isnan(flags[[1, 2]]).all()
    floats, bad = parse("bool", (), np.array([0.0, 1.0, np.nan, 2.0]))
    assert bad.tolist() == [False, False, False, True]
    values, bad = parse("category", (1, 2, 3), ["2", 3.0, None, True])
    assert values.tolist() == [2, 3, None, None] and bad.tolist() == [False, False, False, True]


def test_a_refusal_says_the_value_and_what_the_kind_takes() -> None:
    assert refusal("bool", "maybe") == "'maybe' is not true or false"
    assert refusal("bool", 2) == "2 is not true or false"
    assert refusal("category", [1]) == "a list is not a category (text or a number)"
    assert refusal("category", True) == "True is not a category (text or a number)"


def test_csv_text_of_a_category_is_typed_as_read_csv_types_a_column() -> None:
    from mlops_ci.model.values import as_read_csv

    assert as_read_csv(["3", "", None, " 1"]) == [3, "", None, 1]
    assert as_read_csv(["2.5", "1"]) == [2.5, 1.0]
    assert as_read_csv(["01", "A1"]) == ["01", "A1"]  # one word: the column stays text
    assert as_read_csv(["nan", "1"]) == ["nan", "1"]  # keep_default_na=False: "nan" is text
