"""Model files of each framework, the ONNX wrapper and its standard names, text columns in
requests and batch slices: the parts, without a registry or a server."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pandas as pd
import pyarrow as pa
import pytest
from onnx import TensorProto, helper, numpy_helper

from mlops_ci.batch.score import features_matrix
from mlops_ci.errors import InputError
from mlops_ci.model.features import FeatureSchema
from mlops_ci.model.files import load_model_file
from mlops_ci.model.onnxmodel import OnnxModel, standardize
from mlops_ci.packaging import convert
from mlops_ci.serve.payload import Limits, PayloadError, parse_score
from mlops_ci.serve.v2payload import parse_infer

RNG = np.random.default_rng(0)
X = pd.DataFrame(RNG.normal(size=(200, 3)), columns=["a", "b", "c"])
Y_CLASS = (X["a"] + X["b"] > 0).astype(int)
Y_VALUE = 100 + 50 * X["a"] - 20 * X["c"]


def test_xgboost_and_lightgbm_own_model_files_load_as_estimators(tmp_path: Path) -> None:
    import lightgbm
    import xgboost

    xgb = xgboost.XGBClassifier(n_estimators=10, max_depth=2).fit(X, Y_CLASS)
    xgb.save_model(tmp_path / "model.json")
    loaded = load_model_file(tmp_path / "model.json", "classification")
    assert np.allclose(loaded.predict_proba(X), xgb.predict_proba(X))

    lgb = lightgbm.LGBMRegressor(n_estimators=10, verbose=-1).fit(X, Y_VALUE)
    lgb.booster_.save_model(tmp_path / "model.txt")
    loaded = load_model_file(tmp_path / "model.txt", "regression")
    assert np.allclose(loaded.predict(X), lgb.predict(X))

    clf = lightgbm.LGBMClassifier(n_estimators=10, verbose=-1).fit(X, Y_CLASS)
    clf.booster_.save_model(tmp_path / "clf.txt")
    loaded = load_model_file(tmp_path / "clf.txt", "classification")
    assert np.allclose(loaded.predict_proba(X), clf.predict_proba(X))
    assert (loaded.predict(X) == clf.predict(X)).all()
    # Both convert to ONNX and keep parity.
    for model in (loaded, xgb):
        converted = convert.convert_sklearn(model, X, None)
        sess = convert.session(converted.onnx, 1, "all")
        feeds = convert.frame_feeds(converted.layout, FeatureSchema.of_frame(X), X)
        parity = convert.check_parity(
            convert.native_outputs(model, X),
            convert.onnx_outputs(sess, feeds),
            convert.Tolerance.for_task("classification", None, None, 0.0),
        )
        assert parity.passed, parity


def softmax_graph(output: str = "probs", classes: list[str] | None = None) -> bytes:
    """A 3-feature, 2-class softmax model as an exporter writes it: input x, output probs."""
    w = numpy_helper.from_array(np.array([[1, -1], [1, -1], [0, 0]], np.float32), "w")
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "w"], ["logits"]),
            helper.make_node("Softmax", ["logits"], [output], axis=1),
        ],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3])],
        [helper.make_tensor_value_info(output, TensorProto.FLOAT, ["n", 2])],
        [w],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    if classes:
        helper.set_model_props(model, {"classes": json.dumps(classes)})
    return bytes(model.SerializeToString())


@pytest.mark.parametrize(("classes", "expected"), [(["no", "yes"], ["no", "yes"]), (None, [0, 1])])
def test_onnx_classifier_from_any_exporter_is_scored_and_standardized(
    classes: list[str] | None, expected: list[object]
) -> None:
    model = OnnxModel(softmax_graph(classes=classes), "classification")
    rows = pd.DataFrame([[1.0, 1.0, 0.0], [-1.0, -1.0, 5.0]], columns=["a", "b", "c"])
    assert model.predict(rows).tolist() == expected
    assert model.predict_proba(rows).shape == (2, 2)
    data, layout = standardize(model, ("a", "b", "c"))
    assert layout == "matrix"
    sess = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    assert [i.name for i in sess.get_inputs()] == ["input"]
    label, proba = sess.run(["label", "probabilities"], {"input": rows.to_numpy(np.float32)})
    assert label.tolist() == [str(e) if classes else e for e in expected]
    assert np.allclose(proba, model.predict_proba(rows))


def test_onnx_outputs_named_like_ours_and_regressors() -> None:
    clash = OnnxModel(softmax_graph(output="label"), "classification")  # a float output "label"
    data, _ = standardize(clash, ("a", "b", "c"))
    sess = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    label, proba = sess.run(["label", "probabilities"], {"input": np.ones((1, 3), np.float32)})
    assert label.tolist() == [0] and proba.shape == (1, 2)
    regressor = OnnxModel(linear_graph(), "regression")
    assert not convert.is_classifier(regressor)
    rows = pd.DataFrame(np.ones((4, 3)), columns=["a", "b", "c"])
    assert regressor.predict(rows).tolist() == [6.0] * 4
    data, _ = standardize(regressor, ("a", "b", "c"))
    sess = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    (values,) = sess.run(["variable"], {"input": np.ones((4, 3), np.float32)})
    assert values.shape == (4, 1) and values[0, 0] == 6.0


def linear_graph(input_type: int = TensorProto.FLOAT) -> bytes:
    """y = x · [1, 2, 3] with output shape [rows], as a regression exporter writes it."""
    w = numpy_helper.from_array(np.array([1, 2, 3], np.float32), "w")
    nodes = [helper.make_node("MatMul", ["x32", "w"], ["y"])]
    nodes.insert(0, helper.make_node("Cast", ["x"], ["x32"], to=TensorProto.FLOAT))
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", input_type, ["n", 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n"])],
        [w],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return bytes(model.SerializeToString())


def test_onnx_inputs_that_are_not_float_or_not_columns_are_named() -> None:
    with pytest.raises(InputError, match="input 'x' is tensor\\(double\\)"):
        OnnxModel(linear_graph(TensorProto.DOUBLE), "regression")
    per_column = OnnxModel(softmax_graph(), "classification")
    per_column.columns = ("a", "z")
    with pytest.raises(InputError, match="input\\(s\\) z are not columns of evaluate.data"):
        standardize(per_column, ("a", "b"))
    with pytest.raises(InputError, match="not an ONNX model"):
        OnnxModel(b"not onnx", "classification")


MIXED = FeatureSchema.from_list(
    [{"name": "size", "kind": "number"}, {"name": "colour", "kind": "string"}], "test"
)
MIXED_LIMITS = Limits(2, MIXED.names, 10, MIXED)


@pytest.mark.parametrize(
    "body",
    [
        b'{"inputs": [{"size": 1.5, "colour": "red"}, {"size": 2, "colour": "blue"}]}',
        b'{"inputs": [[1.5, "red"], [2, "blue"]]}',
        b'{"dataframe_split": {"columns": ["colour", "size"], "data": [["red", 1.5], '
        b'["blue", 2]]}}',
    ],
)
def test_text_columns_become_a_table(body: bytes) -> None:
    table = parse_score(body, MIXED_LIMITS)
    assert isinstance(table, dict)
    assert table["size"].dtype == np.float64 and table["size"].tolist() == [1.5, 2.0]
    assert table["colour"].tolist() == ["red", "blue"]


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b'{"inputs": [{"size": 1, "colour": 3}]}', "'colour' in row 0 must be text"),
        (b'{"inputs": [{"size": "1", "colour": "red"}]}', "'size' in row 0 must be a number"),
        (b'{"inputs": [[1, "red", 3]]}', "has 3 values; the model takes 2"),
        (b'{"inputs": [{"size": 1e39, "colour": "red"}]}', "beyond the float32 range"),
    ],
)
def test_text_column_refusals(body: bytes, says: str) -> None:
    with pytest.raises(PayloadError) as caught:
        parse_score(body, MIXED_LIMITS)
    assert caught.value.status == 422 and says in str(caught.value)


def v2(*tensors: dict[str, object]) -> bytes:
    import orjson

    return orjson.dumps({"inputs": list(tensors)})


def test_v2_one_tensor_per_column_json_and_binary_bytes() -> None:
    size = {"name": "size", "shape": [2, 1], "datatype": "FP32", "data": [1.5, 2]}
    colour = {"name": "colour", "shape": [2], "datatype": "BYTES", "data": ["red", "blue"]}
    table = parse_infer(v2(colour, size), None, MIXED_LIMITS).x
    assert isinstance(table, dict) and table["colour"].tolist() == ["red", "blue"]
    raw = b"".join(len(s).to_bytes(4, "little") + s for s in (b"red", b"blue"))
    header = v2(
        {**size, "data": None, "parameters": {"binary_data_size": 8}},
        {
            "name": "colour",
            "shape": [2],
            "datatype": "BYTES",
            "parameters": {"binary_data_size": len(raw)},
        },
    )
    body = header + np.array([1.5, 2], "<f4").tobytes() + raw
    table = parse_infer(body, len(header), MIXED_LIMITS).x
    assert isinstance(table, dict)
    assert table["colour"].tolist() == ["red", "blue"] and table["size"].tolist() == [1.5, 2.0]
    # All-numeric models take named columns too, as their matrix.
    numeric = Limits(2, ("a", "b"), 10, FeatureSchema.numeric(("a", "b")))
    x = parse_infer(
        v2(
            {"name": "b", "shape": [1], "datatype": "INT64", "data": [2]},
            {"name": "a", "shape": [1], "datatype": "FP64", "data": [1]},
        ),
        None,
        numeric,
    ).x
    assert isinstance(x, np.ndarray) and x.tolist() == [[1.0, 2.0]]


@pytest.mark.parametrize(
    ("tensors", "says"),
    [
        ([{"name": "input", "shape": [1, 2], "datatype": "FP32", "data": [1, 2]}], "text columns"),
        ([{"name": "size", "shape": [1], "datatype": "FP32", "data": [1]}], "missing column(s)"),
        (
            [
                {"name": "size", "shape": [1], "datatype": "FP32", "data": [1]},
                {"name": "colour", "shape": [1], "datatype": "FP32", "data": [1]},
            ],
            "must be BYTES",
        ),
        (
            [
                {"name": "size", "shape": [2], "datatype": "FP32", "data": [1, 2]},
                {"name": "colour", "shape": [1], "datatype": "BYTES", "data": ["x"]},
            ],
            "has 1 rows, the others 2",
        ),
        (
            [
                {"name": "size", "shape": [1], "datatype": "FP32", "data": [1]},
                {"name": "colour", "shape": [1], "datatype": "BYTES", "data": [7]},
            ],
            "must be text",
        ),
    ],
)
def test_v2_named_tensor_refusals(tensors: list[dict[str, object]], says: str) -> None:
    with pytest.raises(PayloadError) as caught:
        parse_infer(v2(*tensors), None, MIXED_LIMITS)
    assert 400 <= caught.value.status < 500 and says in str(caught.value)


def test_batch_slice_keeps_text_and_rejects_missing_text() -> None:
    table = pa.table({"size": ["1.5", "x", "3"], "colour": ["red", "blue", None]})
    features = features_matrix(table, ("size", "colour"), ("number", "string"))
    assert features.ok.tolist() == [True, False, False]
    assert features.errors.tolist() == [None, "size: 'x' is not a finite number", "colour: missing"]
    batch = features.batch(np.array([0]))
    assert batch["colour"].tolist() == ["red"] and batch["size"].tolist() == [1.5]


IMPUTED = FeatureSchema.from_list(
    [
        {"name": "size", "kind": "number", "nullable": True},
        {"name": "weight", "kind": "number"},
    ],
    "test",
)
IMPUTED_LIMITS = Limits(2, IMPUTED.names, 10, IMPUTED)


def test_missing_numbers_pass_only_where_the_model_imputes_them() -> None:
    x = parse_score(b'{"inputs": [[null, 2], [1, 3]]}', IMPUTED_LIMITS)
    assert isinstance(x, np.ndarray) and np.isnan(x[0, 0]) and x[1].tolist() == [1.0, 3.0]
    records = parse_score(b'{"inputs": [{"size": null, "weight": 2}]}', IMPUTED_LIMITS)
    assert isinstance(records, np.ndarray) and np.isnan(records[0, 0])
    for body, says in (
        (b'{"inputs": [[1, null]]}', "'inputs[0][1]' in row 0 must be a number, got null"),
        (b'{"inputs": [[1e39, 2]]}', "beyond the float32 range"),
    ):
        with pytest.raises(PayloadError, match=re.escape(says)):
            parse_score(body, IMPUTED_LIMITS)
    binary = np.array([[np.nan, 2.0]], "<f4").tobytes()
    header = v2(
        {
            "name": "input",
            "shape": [1, 2],
            "datatype": "FP32",
            "parameters": {"binary_data_size": 8},
        }
    )
    assert np.isnan(parse_infer(header + binary, len(header), IMPUTED_LIMITS).x[0, 0])
    swapped = np.array([[2.0, np.nan]], "<f4").tobytes()
    with pytest.raises(PayloadError, match="NaN or infinity"):
        parse_infer(header + swapped, len(header), IMPUTED_LIMITS)
    # In a table (a model with text too), the same rule per column.
    mixed = FeatureSchema(
        (
            *IMPUTED.features,
            *FeatureSchema.from_list([{"name": "c", "kind": "string"}], "t").features,
        )
    )
    table = parse_score(b'{"inputs": [[null, 2, "x"]]}', Limits(3, mixed.names, 10, mixed))
    assert isinstance(table, dict) and np.isnan(table["size"][0])


def test_batch_slice_keeps_missing_numbers_the_model_imputes() -> None:
    table = pa.table({"size": ["", "NaN", "x", "4"], "weight": ["1", "2", "3", ""]})
    features = features_matrix(table, ("size", "weight"), (), ("size",))
    assert features.ok.tolist() == [True, True, False, False]
    assert features.errors.tolist() == [
        None,
        None,
        "size: 'x' is not a finite number",
        "weight: missing",
    ]
    assert np.isnan(features.x[0, 0]) and np.isnan(features.x[1, 0])


def test_package_finds_the_columns_a_pipeline_imputes() -> None:
    from sklearn.ensemble import RandomForestRegressor
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LinearRegression
    from sklearn.pipeline import make_pipeline

    schema = FeatureSchema.of_frame(X)
    tol = convert.Tolerance.for_task("regression", None, None, 0.0)

    def found(model: object, onnx: bool = False) -> tuple[str, ...]:
        converted = convert.convert_sklearn(model, X, None) if onnx else None
        sess = convert.session(converted.onnx, 1, "all") if converted else None

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


def test_v2_tensor_names_that_are_not_text_are_refused() -> None:
    body = v2(
        {"name": ["size"], "shape": [1], "datatype": "FP32", "data": [1]},
        {"name": "colour", "shape": [1], "datatype": "BYTES", "data": ["x"]},
    )
    with pytest.raises(PayloadError, match=r"'inputs\[0\].name' must be a string"):
        parse_infer(body, None, MIXED_LIMITS)


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


def test_the_wheel_of_this_mlops_ci_is_deterministic_and_holds_what_serving_imports(
    tmp_path: Path,
) -> None:
    import zipfile

    from mlops_ci.packaging.wheel import build_wheel
    from mlops_ci.provenance import sha256_file

    first = build_wheel(tmp_path / "a")
    second = build_wheel(tmp_path / "b")
    assert first.name == second.name and first.name.startswith("mlops_ci-")
    assert sha256_file(first) == sha256_file(second)
    names = zipfile.ZipFile(first).namelist()
    assert "mlops_ci/serve/app.py" in names and "mlops_ci/config/schema/mlops.schema.json" in names
    assert not any("_bundled" in n or "__pycache__" in n for n in names)
    info = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
    assert info and b"mlops-ci" in zipfile.ZipFile(first).read(info[0])


NULLABLE_TEXT = FeatureSchema.from_list(
    [{"name": "colour", "kind": "string", "nullable": True}, {"name": "size", "kind": "number"}],
    "test",
)


@pytest.mark.parametrize("missing", [b"null", b'""'])
def test_a_missing_text_is_refused_or_taken_as_the_contract_says(missing: bytes) -> None:
    body = b'{"inputs": [{"colour": ' + missing + b', "size": 1.5}]}'
    with pytest.raises(PayloadError, match=r"'colour' in row 0 is missing") as caught:
        parse_score(body, MIXED_LIMITS)  # colour has no gaps there: refused, naming it
    assert caught.value.status == 422
    table = parse_score(body, Limits(2, NULLABLE_TEXT.names, 10, NULLABLE_TEXT))
    assert isinstance(table, dict) and table["colour"].tolist() == [json.loads(missing)]


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


def test_batch_text_gaps_follow_the_contract() -> None:
    table = pa.table({"colour": ["red", "", None], "size": ["1", "2", "3"]})
    strict = features_matrix(table, ("colour", "size"), ("string", "number"))
    assert strict.ok.tolist() == [True, False, False]
    assert strict.errors[1] == "colour: missing"
    lenient = features_matrix(table, ("colour", "size"), ("string", "number"), ("colour",))
    assert lenient.ok.all() and lenient.batch(slice(None))["colour"].tolist() == ["red", None, None]


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
