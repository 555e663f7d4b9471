"""The predictions train records for compare: what it refuses to record, and a model that
predicts several outputs per row, refused where its answers or its description show it."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mlops_ci.evaluation.data import EvaluationData
from mlops_ci.evaluation.predictions import (
    MultipleOutputs,
    kind_of,
    one_output,
    outputs_of,
    predict,
    record,
)
from tests.support.frames import Y_CLASS, Y_VALUE, X

pytestmark = pytest.mark.timeout(60)


def test_the_evaluation_record_is_skipped_for_predictions_json_cannot_hold() -> None:
    from decimal import Decimal

    data = EvaluationData("e.csv", "abc", pd.DataFrame({"x": [1.0, 2.0]}), pd.Series([0, 1]))

    class Model:
        def __init__(self, out: list[object]) -> None:
            self.out = out

        def predict(self, x: object) -> list[object]:
            return self.out

    assert record(Model([Decimal(1), Decimal(2)]), data).text is None  # not JSON
    assert record(Model([float("nan"), 1.0]), data).text is None  # NaN is not JSON either
    kept = record(Model(["a", "b"]), data).text
    assert kept is not None and '"predictions": ["a", "b"]' in kept
    column = record(Model([[1.5], [2.5]]), data).text  # one output, as a column
    assert column is not None and '"predictions": [1.5, 2.5]' in column
    with pytest.raises(MultipleOutputs) as err:  # train records nothing of such a model
        record(Model([[1, 2], [3, 4]]), data)
    assert str(err.value).startswith(
        "mlops.yaml: train.outputs.model: the trained model predicts 2 outputs per row; "
    )


def test_one_output_per_row_takes_a_column_and_refuses_several() -> None:
    assert one_output(np.array([1, 2]), "m").tolist() == [1, 2]
    assert one_output(np.array([[1], [2]]), "m").tolist() == [1, 2]
    with pytest.raises(MultipleOutputs, match="^the candidate predicts 3 outputs per row; "):
        one_output(np.zeros((4, 3)), "the candidate")
    data = EvaluationData("e.csv", "abc", X, Y_VALUE)

    class Wide:
        def predict(self, x: pd.DataFrame) -> np.ndarray:
            return np.zeros((len(x), 2))

    with pytest.raises(MultipleOutputs, match="^e.csv: the production model predicts 2 outputs"):
        predict(Wide(), data, "production")


def test_a_fitted_model_saying_it_predicts_several_outputs_is_refused_by_kind_of() -> None:
    """kind_of is what the model runner's child asks of every model it loads."""
    from sklearn.ensemble import RandomForestRegressor
    from sklearn.linear_model import LinearRegression, LogisticRegression
    from sklearn.multioutput import ClassifierChain, MultiOutputClassifier, MultiOutputRegressor
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    two = pd.DataFrame({"p": Y_CLASS, "q": 1 - Y_CLASS})
    values = pd.DataFrame({"p": Y_VALUE, "q": -Y_VALUE})
    several = {
        "MultiOutputClassifier": MultiOutputClassifier(LogisticRegression()).fit(X, two),
        "Pipeline": make_pipeline(StandardScaler(), MultiOutputRegressor(LinearRegression())),
        "ClassifierChain": ClassifierChain(LogisticRegression()).fit(X, two),
        "RandomForestRegressor": RandomForestRegressor(3, random_state=0).fit(X, values),
    }
    several["Pipeline"].fit(X, values)
    for name, model in several.items():
        assert outputs_of(model) == 2, name
        with pytest.raises(MultipleOutputs, match=rf"^the model \({name}\) predicts 2 outputs"):
            kind_of(model)
    assert kind_of(LogisticRegression().fit(X, Y_CLASS)) == "classification"
    assert kind_of(RandomForestRegressor(3, random_state=0).fit(X, Y_VALUE)) == "regression"
    # a plain regressor fitted on two columns says nothing: its answers show it (predict)
    assert outputs_of(LinearRegression().fit(X, values)) == 1


def test_an_mlp_classifier_predicts_one_label_per_row_whatever_its_output_units() -> None:
    from sklearn.neural_network import MLPClassifier

    from mlops_ci.evaluation.predictions import outputs_of

    x = np.arange(60, dtype=float).reshape(20, 3)
    y = np.array(["a", "b", "c", "d"] * 5)
    model = MLPClassifier(hidden_layer_sizes=(4,), max_iter=5).fit(x, y)
    assert model.n_outputs_ == 4  # its output units, one per class
    assert outputs_of(model) == 1
