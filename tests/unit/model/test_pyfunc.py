"""An MLflow pyfunc model with a scikit-learn face: labels from a column per class, class
probabilities, values; what it answers recorded in its MLmodel so a later load needs no rows."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mlflow.pyfunc
import numpy as np
import pandas as pd
import pytest

from mlops_ci.model.files import load_folder, load_user_model
from mlops_ci.model.pyfunc import PyfuncModel, is_pyfunc_folder, save_copy

ROWS = pd.DataFrame({"x1": [2.0, -1.0, 0.5], "n": [1.0, 2.0, 3.0]})


class Probabilities(mlflow.pyfunc.PythonModel):  # type: ignore[misc]
    def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> Any:
        p = 1 / (1 + np.exp(-np.asarray(model_input["x1"], float)))
        return pd.DataFrame({"no": 1 - p, "yes": p})


class Values(mlflow.pyfunc.PythonModel):  # type: ignore[misc]
    def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> Any:
        return np.asarray(model_input["x1"], float) * 2


def saved(tmp_path: Path, model: Any, signature: bool = False) -> Path:
    folder = tmp_path / "model"
    example = ROWS.astype({"n": "int64"}) if signature else None
    mlflow.pyfunc.save_model(
        str(folder), python_model=model, pip_requirements=["pandas"], input_example=example
    )
    return folder


def test_a_frame_with_a_column_per_class_is_a_classifiers_probabilities(tmp_path: Path) -> None:
    folder = saved(tmp_path, Probabilities())
    assert is_pyfunc_folder(folder)
    model = load_user_model(folder, "classification")
    assert isinstance(model, PyfuncModel) and not hasattr(model, "classes_")
    model.probe(ROWS)
    assert list(model.classes_) == ["no", "yes"]
    assert list(model.predict(ROWS)) == ["yes", "no", "yes"]
    proba = model.predict_proba(ROWS)
    assert proba.shape == (3, 2) and np.allclose(proba.sum(axis=1), 1)
    assert model.model_is_classifier and model.model_kind == "classification"


def test_what_it_answers_is_recorded_so_a_later_load_needs_no_rows(tmp_path: Path) -> None:
    model = load_user_model(saved(tmp_path, Probabilities()), "classification")
    model.probe(ROWS)
    save_copy(model, tmp_path / "logged", signature=None)
    again = load_folder(tmp_path / "logged")  # no task, no rows: the MLmodel says
    assert isinstance(again, PyfuncModel)
    assert list(again.classes_) == ["no", "yes"] and again.model_is_classifier
    assert np.array_equal(again.predict_proba(ROWS), model.predict_proba(ROWS))


def test_a_regressors_values_are_its_predictions(tmp_path: Path) -> None:
    model = load_user_model(saved(tmp_path, Values()), "regression")
    model.probe(ROWS)
    assert not hasattr(model, "predict_proba") and not model.model_is_classifier
    assert np.allclose(model.predict(ROWS), [4.0, -2.0, 1.0])


def test_integer_columns_of_its_signature_take_whole_floats_and_refuse_others(
    tmp_path: Path,
) -> None:
    model = load_user_model(saved(tmp_path, Values(), signature=True), "regression")
    assert list(model.feature_names_in_) == ["x1", "n"]
    assert np.allclose(model.predict(ROWS), [4.0, -2.0, 1.0])  # n: 1.0, 2.0, 3.0 as longs
    with pytest.raises(ValueError):  # n: 1.5 is not a long: the caller's values, refused
        model.predict(ROWS.assign(n=[1.5, 2.0, 3.0]))
