"""What fitted models record of their bool and category columns, read from each library."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlops_ci.model.features import fitted_categories, fitted_dtypes
from mlops_ci.model.fitted import recorded

pytestmark = pytest.mark.timeout(120)

COLOURS = ["red", "green", "blue"]  # the training order, not sorted


def frame(rows: int = 200) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(0)
    data = pd.DataFrame(
        {
            "x": rng.normal(size=rows),
            "colour": pd.Categorical(rng.choice(COLOURS, rows), categories=COLOURS),
            "flag": rng.random(rows) < 0.5,
            "size": pd.Categorical(rng.choice([3, 1, 2], rows)),
        }
    )
    y = ((data["colour"] == "red") ^ data["flag"]).astype(int).to_numpy()
    return data, y


def test_lightgbm_records_its_category_columns_with_their_categories_in_training_order(
    tmp_path: Path,
) -> None:
    import lightgbm

    data, y = frame()
    model = lightgbm.LGBMClassifier(n_estimators=5, verbose=-1).fit(data, y)
    assert fitted_dtypes(model) == {"colour": "category", "size": "category"}
    assert fitted_categories(model) == {"colour": COLOURS, "size": [1, 2, 3]}
    model.booster_.save_model(tmp_path / "model.txt")  # the booster's own file says the same
    booster = lightgbm.Booster(model_file=tmp_path / "model.txt")
    assert fitted_categories(booster) == {"colour": COLOURS, "size": [1, 2, 3]}


def test_lightgbm_with_an_ordered_category_records_nothing_it_cannot_place() -> None:
    import lightgbm

    data, y = frame()
    data["size"] = data["size"].cat.as_ordered()  # fitted as a number, yet listed
    model = lightgbm.LGBMClassifier(n_estimators=5, verbose=-1).fit(data, y)
    assert fitted_dtypes(model) == {}


def test_hist_gradient_boosting_from_dtype_records_its_categories() -> None:
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.pipeline import make_pipeline

    data, y = frame()
    model = HistGradientBoostingClassifier(max_iter=5, categorical_features="from_dtype")
    model.fit(data, y)
    assert fitted_dtypes(model) == {"colour": "category", "size": "category"}
    assert set(fitted_categories(model)["colour"]) == set(COLOURS)  # it maps values
    assert fitted_dtypes(make_pipeline(model)) == fitted_dtypes(model)  # a Pipeline's first step
    coded = HistGradientBoostingClassifier(max_iter=5, categorical_features=[0])
    assert fitted_dtypes(coded.fit(np.c_[np.arange(200) % 3, data["x"]], y)) == {}


def test_xgboost_records_categories_and_bools() -> None:
    import xgboost

    data, y = frame()
    model = xgboost.XGBClassifier(n_estimators=3, enable_categorical=True).fit(data, y)
    assert fitted_dtypes(model) == {"colour": "category", "flag": "bool", "size": "category"}
    assert fitted_categories(model)["colour"] == COLOURS


def test_catboost_records_its_cat_features() -> None:
    catboost = pytest.importorskip("catboost")
    data, y = frame()
    model = catboost.CatBoostClassifier(
        iterations=3, verbose=0, cat_features=["colour"], allow_writing_files=False
    )
    model.fit(data[["x", "colour", "flag"]], y)
    assert recorded(model) == {"colour": ("category", ())}


def test_a_model_that_records_nothing_or_fails_to_say_records_nothing() -> None:
    from sklearn.linear_model import LogisticRegression

    data, y = frame()
    assert fitted_dtypes(LogisticRegression().fit(data[["x"]], y)) == {}
    assert fitted_dtypes(object()) == {}

    class Broken:
        __module__ = "lightgbm.sklearn"

        @property
        def booster_(self) -> object:
            raise RuntimeError("not fitted")

    assert fitted_dtypes(Broken()) == {}
