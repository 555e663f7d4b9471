"""The feature contract: a missing text reaches the native model and ONNX as each expects."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlops_ci.errors import InputError
from mlops_ci.model.features import FeatureSchema
from mlops_ci.packaging import convert
from tests.support.payloads import NULLABLE_TEXT


def test_missing_text_reaches_each_runtime_as_it_expects() -> None:
    """The native model gets NaN (as read_csv gives compare), an ONNX graph the empty string."""
    from mlops_ci.model.features import native_frame, table_of_frame

    frame = pd.DataFrame({"colour": ["red", np.nan], "size": [1.0, np.nan]})
    table = table_of_frame(NULLABLE_TEXT, frame)
    assert table["colour"].tolist() == ["red", None]
    native = native_frame(NULLABLE_TEXT, table)
    assert native["colour"].isna().tolist() == [False, True]
    # An empty text, as /score may send it, reaches the native model as missing too.
    sent = {"colour": np.array(["", "red", None], dtype=object), "size": np.ones(3)}
    assert native_frame(NULLABLE_TEXT, sent)["colour"].isna().tolist() == [True, False, True]
    assert native["size"].dtype == np.float64
    feeds = convert.table_feeds(NULLABLE_TEXT, table)
    assert feeds["colour"].ravel().tolist() == ["red", ""]
    assert feeds["size"].dtype == np.float32 and np.isnan(feeds["size"][1, 0])


KINDS = FeatureSchema.from_list(
    [
        {"name": "x", "kind": "number"},
        {"name": "flag", "kind": "bool", "nullable": True},
        {"name": "colour", "kind": "category", "categories": ["red", "green", "blue"]},
        {"name": "size", "kind": "category", "nullable": True, "categories": [1, 2, 3]},
    ],
    "test",
)


@pytest.mark.timeout(60)
def test_the_manifest_keeps_bool_and_category_kinds_and_categories_in_order() -> None:
    assert FeatureSchema.from_list(KINDS.to_list(), "test") == KINDS
    assert KINDS.to_list()[2] == {
        "name": "colour",
        "kind": "category",
        "categories": ["red", "green", "blue"],
    }
    assert KINDS.all_numeric is False and KINDS.booleans == (1,)
    assert KINDS.not_numeric == ("colour", "size")
    # an ONNX graph takes a category as text
    assert [f.kind for f in KINDS.onnx_takes().features] == ["number", "bool", "string", "string"]
    for bad in (
        [{"name": "a", "kind": "date"}],
        [{"name": "a", "kind": "number", "categories": ["x"]}],
        [{"name": "a", "kind": "category", "categories": [[1]]}],
    ):
        with pytest.raises(InputError, match=r"schema\[0\] must be"):
            FeatureSchema.from_list(bad, "manifest.json")


@pytest.mark.timeout(60)
def test_kinds_of_a_frame_bools_and_categories_with_theirs() -> None:
    frame = pd.DataFrame(
        {
            "flag": [True, False],
            "gappy": pd.array([True, None], dtype="boolean"),
            "colour": pd.Categorical(["blue", "red"], categories=["red", "green", "blue"]),
            "n": [1, 2],
        }
    )
    schema = FeatureSchema.of_frame(frame)
    assert [(f.kind, f.nullable) for f in schema.features] == [
        ("bool", False),
        ("bool", True),
        ("category", False),
        ("number", False),
    ]
    assert schema.features[2].categories == ("red", "green", "blue")
    assert schema.all_numeric is False
    assert FeatureSchema.of_frame(frame[["flag", "n"]]).all_numeric  # a bool is 0/1


@pytest.mark.timeout(60)
def test_bools_and_categories_reach_the_native_model_as_compare_gave_them() -> None:
    from mlops_ci.model.features import native_frame, onnx_frame, table_of_frame

    sent = {
        "x": np.array([1.0, 2.0, 3.0]),
        "flag": np.array([1.0, np.nan, 0.0]),  # as the request parsers hand a bool on
        "colour": np.array(["blue", "purple", "red"], dtype=object),
        "size": np.array(["2", 3.0, None], dtype=object),  # text or a number: cast to ints
    }
    native = native_frame(KINDS, sent)
    assert str(native["flag"].dtype) == "boolean" and native["flag"].tolist()[0] is True
    assert native["flag"].isna().tolist() == [False, True, False]
    # the model's categories first, in its order; an unseen one after them
    assert native["colour"].cat.categories.tolist() == ["red", "green", "blue", "purple"]
    assert native["size"].cat.categories.tolist() == [1, 2, 3]
    assert native["size"].tolist()[:2] == [2, 3] and native["size"].isna().tolist()[2]
    complete = native_frame(KINDS, {**sent, "flag": np.array([1.0, 0.0, 1.0])})
    assert complete["flag"].dtype == np.bool_  # bool where none is missing, as fitted
    matrix = native_frame(FeatureSchema(KINDS.features[:2]), np.array([[1.5, 1.0], [2.5, 0.0]]))
    assert matrix["flag"].tolist() == [True, False]
    table = table_of_frame(KINDS, native)
    assert table["flag"][[0, 2]].tolist() == [1.0, 0.0] and np.isnan(table["flag"][1])
    assert table["colour"].tolist() == ["blue", "purple", "red"]
    assert table["size"].tolist() == [2, 3, None]
    graph = onnx_frame(native)  # what an ONNX graph is converted from and fed
    assert graph["flag"].dtype == np.float64 and graph["colour"].tolist() == [
        "blue",
        "purple",
        "red",
    ]
    assert graph["size"].tolist()[:2] == ["2", "3"] and graph["x"].dtype == np.float64


@pytest.mark.timeout(60)
def test_a_csv_read_frame_gets_the_kinds_its_model_records_and_scores_as_fitted(
    tmp_path: Path,
) -> None:
    """read_csv loses the category dtype (LightGBM: "train and valid dataset
    categorical_feature do not match"); model_frame gives it back, in the model's order."""
    from lightgbm import LGBMClassifier

    from mlops_ci.model.features import Feature, model_frame, typed_frame

    rng = np.random.default_rng(0)
    colours = ["red", "green", "blue"]
    frame = pd.DataFrame(
        {
            "x": rng.normal(size=300),
            "colour": pd.Categorical(rng.choice(colours, 300), categories=colours),
            "flag": rng.random(300) < 0.5,
        }
    )
    y = ((frame["colour"] == "red") ^ frame["flag"]).astype(int)
    model = LGBMClassifier(n_estimators=10, verbose=-1).fit(frame, y)
    frame.to_csv(tmp_path / "data.csv", index=False)
    read = pd.read_csv(tmp_path / "data.csv", keep_default_na=False, na_values=[""])
    with pytest.raises(ValueError, match="categorical_feature do not match"):
        model.predict_proba(read)
    typed = model_frame(model, read, "data.csv")
    assert np.array_equal(model.predict_proba(typed), model.predict_proba(frame))
    read["flag"] = read["flag"].astype(object)
    read.loc[6, "flag"] = "maybe"
    declared = {"flag": Feature("flag", "bool")}  # evaluate.dtypes (LightGBM records no bool)
    with pytest.raises(InputError, match=r"data.csv:8: column 'flag': 'maybe' is not true or fa"):
        typed_frame(read, declared, "data.csv")


def test_a_column_lightgbm_renamed_is_found_by_the_datas_own_name() -> None:
    from mlops_ci.model.features import model_frame

    class Renamed:  # LightGBM's feature_names_in_ writes a space as "_"
        feature_names_in_ = np.array(["x_2", "a"], dtype=object)

    frame = pd.DataFrame({"a": [1.0], "x 2": [2.0], "extra": [3.0]})
    assert list(model_frame(Renamed(), frame, "evaluate.data").columns) == ["x 2", "a"]
    both = pd.DataFrame({"a b_c": [1.0], "a_b c": [2.0]})  # a_b_c fits either: refused
    Renamed.feature_names_in_ = np.array(["a_b_c"], dtype=object)
    with pytest.raises(InputError, match="a_b_c"):
        model_frame(Renamed(), both, "evaluate.data")
