"""ONNX conversion and parity: imputed columns found, label-only classifiers checked,
a refused step named."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mlops_ci.model.features import FeatureSchema
from mlops_ci.packaging import convert, sessions
from tests.support.frames import Y_CLASS, Y_VALUE, X


def test_package_finds_the_columns_a_pipeline_imputes() -> None:
    from sklearn.ensemble import RandomForestRegressor
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LinearRegression
    from sklearn.pipeline import make_pipeline

    schema = FeatureSchema.of_frame(X)
    tol = convert.Tolerance.for_task("regression", None, None, 0.0)

    def found(model: object, onnx: bool = False) -> tuple[str, ...]:
        converted = convert.convert_sklearn(model, X, None) if onnx else None
        sess = sessions.session(converted.onnx, 1, "all") if converted else None

        def ours(rows: pd.DataFrame) -> convert.Outputs:
            assert converted is not None
            feeds = convert.frame_feeds(converted.layout, schema, rows)
            return convert.onnx_outputs(sess, feeds)

        return convert.missing_ok(
            schema, X, lambda rows: convert.native_outputs(model, rows), ours if onnx else None, tol
        )

    imputing = make_pipeline(SimpleImputer(), LinearRegression()).fit(X, Y_VALUE)
    assert found(imputing) == found(imputing, onnx=True) == ("a", "b", "c")
    assert found(LinearRegression().fit(X, Y_VALUE)) == ()
    # scikit-learn's forest scores NaN, but its ONNX graph routes NaN another way: not served.
    forest = RandomForestRegressor(20, random_state=0).fit(X, Y_VALUE)
    assert found(forest) == ("a", "b", "c") and found(forest, onnx=True) != ("a", "b", "c")


def test_a_classifier_without_probabilities_is_checked_by_its_labels() -> None:
    from sklearn.svm import LinearSVC

    model = LinearSVC().fit(X, Y_CLASS.map({0: "no", 1: "yes"}))
    assert convert.is_classifier(model) and convert.class_labels(model) == ("no", "yes")
    native = convert.native_outputs(model, X)
    assert native.labels is not None and native.scores.shape == (len(X), 0)
    onnx_like = convert.Outputs(native.labels.copy(), np.ones((len(X), 2)))  # other scores
    tol = convert.Tolerance.for_task("classification", None, None, 0.0)
    assert convert.check_parity(native, onnx_like, tol).passed
    flipped = native.labels.copy()
    flipped[3] = "yes" if flipped[3] == "no" else "no"
    parity = convert.check_parity(native, convert.Outputs(flipped, onnx_like.scores), tol)
    assert not parity.passed and parity.worst_rows[0][0] == 3
    assert parity.worst_rows[0][2:] == (str(native.labels[3]), str(flipped[3]))


def test_conversion_errors_name_the_refused_step_and_end_on_a_word() -> None:
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder

    assert convert.shortened("alpha beta gamma", 12) == "alpha beta…"
    assert convert.shortened("short", 12) == "short"
    frame = pd.DataFrame({"t": ["a", "b", "-1", "a"], "b": [0.0, 1.0, 0.0, 1.0]}, dtype=object)
    # A text imputer whose missing value is a number: skl2onnx refuses that step.
    imputer = SimpleImputer(missing_values=-1, strategy="constant", fill_value="x")
    encoded = make_pipeline(
        ColumnTransformer([("t", make_pipeline(imputer, OneHotEncoder()), ["t"])]),
        LogisticRegression(),
    ).fit(frame, [0, 1, 0, 1])
    with pytest.raises(convert.ConversionRefused, match=r"of SimpleImputer \(in Pipeline"):
        convert.convert_sklearn(encoded, frame, None)


def test_the_probability_of_a_row_is_its_predicted_labels_column() -> None:
    scores = np.array([[0.2, 0.8], [0.6, 0.4], [0.65, 0.35]])
    labels = np.array(["yes", "no", "yes"], dtype=object)  # a threshold of 0.3 chose row 2
    chosen = convert.label_probability(labels, scores, ("no", "yes"))
    assert chosen.tolist() == [0.8, 0.6, 0.35]
    assert convert.label_probability(np.array([1, 0, 1]), scores, ("0", "1")).tolist() == [
        0.8,
        0.6,
        0.35,
    ]
    # without classes an integer label is its column (an ONNX graph's arg-max index)
    assert convert.label_probability(np.array([1, 0, 1]), scores, ())[:2].tolist() == [0.8, 0.6]
    unknown = convert.label_probability(np.array(["yes", "maybe", "2"]), scores, ("no", "yes"))
    assert unknown[0] == 0.8 and np.isnan(unknown[1:]).all()


def test_a_thresholded_classifier_is_labelled_by_its_predict_and_never_converted() -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import FixedThresholdClassifier, TunedThresholdClassifierCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    y = Y_CLASS.map({0: "no", 1: "yes"})
    fixed = FixedThresholdClassifier(LogisticRegression(), threshold=0.3).fit(X, y)
    native = convert.native_outputs(fixed, X)
    assert native.labels is not None and native.labels.tolist() == fixed.predict(X).tolist()
    moved = native.labels != fixed.classes_[native.scores.argmax(axis=1)]
    assert moved.any()  # rows the threshold labels otherwise than the largest probability
    with pytest.raises(convert.ConversionRefused) as err:
        convert.convert_sklearn(fixed, X, None)
    assert str(err.value) == (
        "ONNX conversion of FixedThresholdClassifier refused: it predicts by its threshold "
        "(0.3), the converted graph by the largest probability"
    )
    tuned = make_pipeline(StandardScaler(), TunedThresholdClassifierCV(LogisticRegression(), cv=3))
    tuned.fit(X, Y_CLASS)  # skl2onnx has a converter for it, which labels by the arg-max
    with pytest.raises(
        convert.ConversionRefused, match=r"TunedThresholdClassifierCV \(in Pipeline"
    ):
        convert.convert_sklearn(tuned, X, None)


def test_native_outputs_refuse_a_model_answering_several_outputs_per_row() -> None:
    from sklearn.linear_model import LinearRegression

    from mlops_ci.evaluation.predictions import MultipleOutputs

    two = LinearRegression().fit(X, pd.DataFrame({"p": Y_VALUE, "q": -Y_VALUE}))
    with pytest.raises(MultipleOutputs, match=r"^the model \(LinearRegression\) predicts 2 "):
        convert.native_outputs(two, X)
    one = LinearRegression().fit(X, Y_VALUE.to_frame())  # a column: one output per row
    assert convert.native_outputs(one, X).scores.shape == (len(X), 1)
