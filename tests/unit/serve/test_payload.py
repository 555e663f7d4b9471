"""/score bodies: every spelling gives the same matrix, text columns a table, and each
refusal names its problem."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from mlops_ci.model.features import FeatureSchema
from mlops_ci.serve.payload import Limits, PayloadError, parse_score
from mlops_ci.serve.v2payload import parse_infer
from tests.support.payloads import LIMITS, MIXED_LIMITS, NULLABLE_TEXT
from tests.support.payloads import v2_columns as v2


@pytest.mark.parametrize(
    "body",
    [
        b'{"inputs": [[1, 2.5]]}',
        b'{"inputs": [{"b": 2.5, "a": 1}]}',
        b'{"dataframe_records": [{"a": 1, "b": 2.5}]}',
        b'{"dataframe_split": {"columns": ["b", "a"], "data": [[2.5, 1]]}}',
        b'{"data": [[1, 2.5]]}',
        b'{"input_data": {"columns": ["a", "b"], "data": [[1, 2.5]]}}',
    ],
)
def test_score_spellings_give_the_same_matrix(body: bytes) -> None:
    x = parse_score(body, LIMITS)
    assert x.dtype == np.float64 and x.tolist() == [[1.0, 2.5]]


@pytest.mark.parametrize(
    ("body", "status", "says"),
    [
        (b"", 400, "empty request body"),
        (b"{", 400, "invalid JSON"),
        (b"[1]", 400, "JSON object"),
        (b'{"rows": []}', 400, "missing field 'inputs'"),
        (b'{"inputs": []}', 422, "is empty"),
        (b'{"inputs": [[1]]}', 422, "has 1 values; the model takes 2"),
        (b'{"inputs": [[1, "x"]]}', 422, "must be a number, got a string"),
        (b'{"inputs": [[1, true]]}', 422, "got a boolean"),
        (b'{"inputs": [[1, null]]}', 422, "got null"),
        (b'{"inputs": [{"a": 1}]}', 422, "missing field(s) b"),
        (b'{"inputs": [{"a": 1, "b": 2, "c": 3}]}', 422, "unknown field(s) c"),
        (b'{"inputs": [{"a": 1, "b": "2"}]}', 422, "'b' in row 0 must be a number"),
        (b'{"inputs": [[1, 1e39]]}', 422, "beyond the float32 range"),
        (b'{"inputs": [[1, 2], [1, 2], [1, 2], [1, 2]]}', 413, "limit is 3"),
        (b'{"inputs": [[1, 2], 5]}', 422, "'inputs[1]' must be a list"),
        (b'{"inputs": "1,2"}', 400, "got a string"),
        (b'{"inputs": [[1, 2]], "dataframe_split": {}}', 400, "send one of inputs, dataframe"),
        # 340282346638528860000000000000000000001 reads as float32's largest as a float64
        (b'{"inputs": [[1, 340282346638528860000000000000000000001]]}', 422, "float32 range"),
    ],
)
def test_score_refusals_name_the_problem(body: bytes, status: int, says: str) -> None:
    with pytest.raises(PayloadError) as caught:
        parse_score(body, LIMITS)
    assert caught.value.status == status and says in str(caught.value)


def test_records_need_feature_names() -> None:
    with pytest.raises(PayloadError, match="records no feature names"):
        parse_score(b'{"inputs": [{"a": 1, "b": 2}]}', Limits(2, (), 10))


def test_the_edge_of_float32_written_exactly_is_a_number_like_any_other() -> None:
    edge = b'{"inputs": [[1, 340282346638528859811704183484516925440]]}'
    assert parse_score(edge, LIMITS)[0, 1] == np.finfo(np.float32).max


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


@pytest.mark.parametrize("missing", [b"null", b'""'])
def test_a_missing_text_is_refused_or_taken_as_the_contract_says(missing: bytes) -> None:
    body = b'{"inputs": [{"colour": ' + missing + b', "size": 1.5}]}'
    with pytest.raises(PayloadError, match=r"'colour' in row 0 is missing") as caught:
        parse_score(body, MIXED_LIMITS)  # colour has no gaps there: refused, naming it
    assert caught.value.status == 422
    table = parse_score(body, Limits(2, NULLABLE_TEXT.names, 10, NULLABLE_TEXT))
    assert isinstance(table, dict) and table["colour"].tolist() == [json.loads(missing)]
