"""/score bodies: every spelling gives the same matrix, text columns a table, and each
refusal names its problem."""

from __future__ import annotations

import json
import random
import re
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson
import pytest

from mlops_ci.model.features import FeatureSchema
from mlops_ci.serve.payload import (
    MAX_JSON_DEPTH,
    Limits,
    PayloadError,
    check_depth,
    parse_json,
    parse_score,
)
from mlops_ci.serve.v2payload import parse_infer
from tests.support.payloads import (
    KINDS_LIMITS,
    LIMITS,
    MIXED_LIMITS,
    NULLABLE_TEXT,
    NUMBER_BOOL_LIMITS,
)
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


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    "body",
    [
        b'{"inputs": [{"x": 1, "flag": true, "colour": "red", "size": 2},'
        b' {"x": 2, "flag": false, "colour": "blue", "size": null}]}',
        b'{"inputs": [[1, "True", "red", "2"], [2, 0, "blue", null]]}',
        b'{"dataframe_split": {"columns": ["flag", "x", "colour", "size"],'
        b' "data": [[true, 1, "red", 2.0], [false, 2, "blue", null]]}}',
    ],
)
def test_bool_and_category_columns_take_json_true_false_text_and_numbers(body: bytes) -> None:
    table = parse_score(body, KINDS_LIMITS)
    assert isinstance(table, dict)
    assert table["flag"].dtype == np.float64 and table["flag"].tolist() == [1.0, 0.0]
    assert table["colour"].tolist() == ["red", "blue"]  # blue: unseen, the model's to score
    assert table["size"].tolist() == [2, None]  # cast to the categories' type


@pytest.mark.timeout(60)
def test_a_number_and_a_bool_stay_one_float_matrix() -> None:
    x = parse_score(b'{"inputs": [[1.5, true], [2, false], [3, null]]}', NUMBER_BOOL_LIMITS)
    assert isinstance(x, np.ndarray) and x[:2].tolist() == [[1.5, 1.0], [2.0, 0.0]]
    assert np.isnan(x[2, 1])  # nullable
    records = parse_score(b'{"inputs": [{"flag": "FALSE", "x": 1}]}', NUMBER_BOOL_LIMITS)
    assert isinstance(records, np.ndarray) and records.tolist() == [[1.0, 0.0]]


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("body", "limits", "says"),
    [
        (b'{"inputs": [[1, "maybe"]]}', NUMBER_BOOL_LIMITS, "'flag' in row 0: 'maybe' is not true"),
        (b'{"inputs": [[1, 2]]}', NUMBER_BOOL_LIMITS, "'flag' in row 0: 2 is not true or false"),
        (b'{"inputs": [{"x": 1, "flag": "yes", "colour": "red", "size": 1}]}', KINDS_LIMITS,
         "'flag' in row 0: 'yes' is not true or false"),
        (b'{"inputs": [{"x": 1, "flag": null, "colour": "red", "size": 1}]}', KINDS_LIMITS,
         "'flag' in row 0 is missing (null)"),
        (b'{"inputs": [{"x": 1, "flag": true, "colour": true, "size": 1}]}', KINDS_LIMITS,
         "'colour' in row 0: True is not a category (text or a number)"),
        (b'{"inputs": [{"x": 1, "flag": true, "colour": "", "size": 1}]}', KINDS_LIMITS,
         "'colour' in row 0 is missing (an empty string)"),
        (b'{"inputs": [{"x": 1, "flag": true, "colour": [1], "size": 1}]}', KINDS_LIMITS,
         "'colour' in row 0: a list is not a category"),
    ],
)  # fmt: skip
def test_a_value_a_kind_does_not_take_is_a_422_naming_the_column(
    body: bytes, limits: Limits, says: str
) -> None:
    with pytest.raises(PayloadError) as caught:
        parse_score(body, limits)
    assert caught.value.status == 422 and says in str(caught.value)


@pytest.mark.timeout(60)
def test_v2_takes_bool_as_BOOL_or_zero_one_and_a_category_as_BYTES_or_numbers() -> None:
    def body(flag: dict[str, object], size: dict[str, object] | None = None) -> bytes:
        return v2(
            {"name": "x", "shape": [2], "datatype": "FP32", "data": [1, 2]},
            {"name": "flag", "shape": [2, 1], **flag},
            {"name": "colour", "shape": [2], "datatype": "BYTES", "data": ["green", "red"]},
            {"name": "size", "shape": [2], **(size or {"datatype": "INT64", "data": [3, None]})},
        )

    table = parse_infer(body({"datatype": "BOOL", "data": [True, False]}), None, KINDS_LIMITS).x
    assert isinstance(table, dict)
    assert table["flag"].tolist() == [1.0, 0.0] and table["size"].tolist() == [3, None]
    assert table["colour"].tolist() == ["green", "red"]
    ints = parse_infer(body({"datatype": "INT8", "data": [0, 1]}), None, KINDS_LIMITS).x
    assert isinstance(ints, dict) and ints["flag"].tolist() == [0.0, 1.0]
    texts = {"datatype": "BYTES", "data": ["2", "1"]}  # a whole-number category sent as text
    sized = parse_infer(body({"datatype": "BOOL", "data": [True, True]}, texts), None, KINDS_LIMITS)
    assert isinstance(sized.x, dict) and sized.x["size"].tolist() == [2, 1]
    # binary BOOL bytes, as tritonclient sends them
    header = orjson.dumps(
        {"inputs": [
            {"name": "x", "shape": [2], "datatype": "FP64", "data": [1, 2]},
            {"name": "flag", "shape": [2], "datatype": "BOOL",
             "parameters": {"binary_data_size": 2}},
            {"name": "colour", "shape": [2], "datatype": "BYTES", "data": ["red", "red"]},
            {"name": "size", "shape": [2], "datatype": "FP64", "data": [1.0, 2.0]},
        ]}
    )  # fmt: skip
    binary = parse_infer(header + bytes([1, 0]), len(header), KINDS_LIMITS).x
    assert isinstance(binary, dict) and binary["flag"].tolist() == [1.0, 0.0]
    for flag, says in (
        ({"datatype": "INT64", "data": [2, 0]}, "'flag' in row 0: 2 is not true or false"),
        ({"datatype": "BYTES", "data": ["true", "false"]}, "is not BOOL or a numeric type"),
    ):
        with pytest.raises(PayloadError, match=re.escape(says)):
            parse_infer(body(flag), None, KINDS_LIMITS)
    with pytest.raises(PayloadError, match="is not BYTES or a numeric type"):
        parse_infer(body({"datatype": "BOOL", "data": [True, False]}, {"datatype": "BOOL",
                                                                 "data": [True, False]}),
                    None, KINDS_LIMITS)  # fmt: skip
    one = orjson.dumps({"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32",
                                    "data": [1, 1, 1, 1]}]})  # fmt: skip
    with pytest.raises(PayloadError, match=r"text or category columns \(colour, size\)"):
        parse_infer(one, None, KINDS_LIMITS)


def _matrix(body: bytes) -> npt.NDArray[np.float64]:
    x = parse_score(body, LIMITS)
    assert isinstance(x, np.ndarray)
    return x


def _nested(depth: int, leaf: bytes = b"1" * 39) -> bytes:
    return b"[" * depth + leaf + b"]" * depth


@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH + 1, 1_000, 100_000])
def test_a_body_nested_past_the_limit_is_a_400_naming_it_before_any_parse(depth: int) -> None:
    """1,000 deep with a 39-digit integer was a 500 (a second, recursive parse of it)."""
    for parse in (
        lambda b: parse_score(b'{"inputs": ' + b + b"}", LIMITS),
        lambda b: parse_infer(v2({"name": "x", "shape": [1, 2], "data": "@"}).replace(
            b'"@"', b), None, LIMITS),
        lambda b: parse_json(b),
    ):  # fmt: skip
        with pytest.raises(PayloadError) as caught:
            parse(_nested(depth))
        assert caught.value.status == 400
        assert f"nested deeper than {MAX_JSON_DEPTH} levels" in str(caught.value)
    header = b'{"inputs": [{"name": "x", "parameters": ' + _nested(depth, b"{}") + b"}]}"
    with pytest.raises(PayloadError, match="nested deeper"):  # the binary extension's header
        parse_infer(header + b"\0" * 8, len(header), LIMITS)


def test_the_deepest_allowed_body_is_parsed_and_refused_for_its_shape_only() -> None:
    with pytest.raises(PayloadError) as caught:
        parse_score(b'{"inputs": ' + _nested(MAX_JSON_DEPTH - 1) + b"}", LIMITS)
    assert caught.value.status == 422 and "has 1 values" in str(caught.value)


@pytest.mark.parametrize(
    "text",
    [
        "[" * 1000,
        "{" * 1000 + '\\"' + "[" * 1000,  # an escaped quote does not end the string
        "\\\\" + "]" * 50,  # an escaped backslash does not escape the quote after it
        "\\u005b" * 1000,
    ],
)
def test_brackets_inside_strings_do_not_count(text: str) -> None:
    body = b'{"inputs": [[1, 2]], "note": "' + text.encode() + b'"}'
    assert json.loads(body)["note"]  # the body is valid JSON
    assert _matrix(body).tolist() == [[1.0, 2.0]]


def test_the_depth_scan_agrees_with_the_parsed_depth_of_random_documents() -> None:
    rng = random.Random(40)
    leaves: list[object] = [1, 'a"[{', "\\", 'x\\"]', None, 2.5, "}}]]"]

    def document(depth: int) -> object:
        """``depth`` deep down one branch, shallow ones beside it, leaves full of marks."""
        if depth == 0:
            return rng.choice(leaves)
        side = min(2, depth - 1)
        values = [document(depth - 1)] + [document(rng.randint(0, side)) for _ in range(2)]
        rng.shuffle(values)
        if rng.random() < 0.5:
            return values
        return {f'k[{i}"\\': value for i, value in enumerate(values)}

    def depth_of(value: object) -> int:
        if isinstance(value, list):
            return 1 + max(map(depth_of, value), default=0)
        if isinstance(value, dict):
            return 1 + max(map(depth_of, value.values()), default=0)
        return 0

    seen = set()
    for _ in range(400):
        doc = document(rng.randint(1, 40))
        deep = depth_of(doc) > MAX_JSON_DEPTH
        seen.add(deep)
        body = json.dumps(doc).encode()
        if deep:
            with pytest.raises(PayloadError, match="nested deeper"):
                check_depth(body)
        else:
            check_depth(body)
    assert seen == {True, False}


@pytest.mark.parametrize(
    ("number", "refused"),
    [
        (b"340282346638528859811704183484516925441", True),  # one past float32's largest
        (b"-340282346638528859811704183484516925441", True),
        (b"340282346638528859811704183484516925440", False),  # its largest, exactly
        (b"1" + b"0" * 39, True),  # 40 digits
        (b"340282346638528859811704183484516925441.5", False),  # a float: read as one
        (b"1e-0000000000000000000000000000000000000005", False),  # digits of an exponent
    ],
)
def test_long_integers_are_compared_exactly_without_a_second_parse(
    number: bytes, refused: bool
) -> None:
    body = b'{"inputs": [[1, ' + number + b"]]}"
    if refused:
        with pytest.raises(PayloadError) as caught:
            parse_score(body, LIMITS)
        assert caught.value.status == 422 and "beyond the float32 range" in str(caught.value)
    else:
        assert _matrix(body).shape == (1, 2)


def test_long_digits_inside_a_string_are_text() -> None:
    body = b'{"inputs": [[1, 2]], "id": "x\\"' + b"9" * 60 + b'"}'
    assert _matrix(body).tolist() == [[1.0, 2.0]]
    with pytest.raises(PayloadError, match="invalid JSON"):  # beyond float64: orjson refuses
        parse_score(b'{"inputs": [[1, ' + b"9" * 5000 + b"]]}", LIMITS)


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    "rows",
    [
        [[1, 2.5, -3, 4e10]],
        [[0.1, 0.2, 0.3, 0.4], [5, 6, 7, 8]],
        [[2**62, -(2**63), 1, 1]],  # int64 edges
        [[2**64, 1, 1, 1]],  # past 64 bits: numpy makes objects
        [[3.5e38, 1, 1, 1]],  # beyond float32
        [[1, 2, 3]],  # too narrow
        [[1, 2, 3, 4], [1, 2, 3]],  # ragged
        [[1, "2", 3, 4]],  # a string
        [[1, True, 3, 4]],  # a bool reads as 1 in numpy
        [[1, None, 3, 4]],  # null
        [[1, {"a": 1}, 3, 4]],
        [[1, [2], 3, 4]],
    ],
)
def test_plain_number_rows_read_in_one_numpy_call_answer_as_value_by_value(rows: list) -> None:
    """``parse_score``'s one numpy call for plain rows gives the array, or the refusal, that
    the value-by-value checks give (they answer whatever it does not take)."""
    from mlops_ci.serve.payload import _rows_or_records

    limits = Limits(4, ("a", "b", "c", "d"), 100, FeatureSchema.numeric(("a", "b", "c", "d")))
    body = json.dumps({"inputs": rows}).encode()  # json writes integers past 64 bits

    def outcome(parse: Any) -> Any:
        try:
            got = parse()
        except PayloadError as err:
            return err.status, str(err)
        return np.asarray(got).dtype.str, np.asarray(got).tobytes()

    fast = outcome(lambda: parse_score(body, limits))
    slow = outcome(lambda: _rows_or_records(orjson.loads(body)["inputs"], "inputs", limits))
    assert fast == slow
