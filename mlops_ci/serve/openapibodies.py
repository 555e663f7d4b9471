"""The JSON Schemas of the request bodies one version accepts, from its columns and limits:
``/score``'s rows and records (and the MLflow / Azure ML spellings), and the v2 infer body's
tensors (one [rows, features] matrix, or one tensor per column; text as BYTES). ``openapi``
puts them in the document."""

from __future__ import annotations

from typing import Any

from mlops_ci.model.features import BOOL, CATEGORY, STRING, Feature, FeatureSchema
from mlops_ci.serve.payload import FLOAT32_MAX, SCORE_KEYS, V2_NUMERIC, Limits

# The float32 edge written exactly (3.4028234663852886e+38 would be read as a larger decimal).
F32_MAX = int(FLOAT32_MAX)
NUMBER = {"type": "number", "minimum": -F32_MAX, "maximum": F32_MAX}  # finite, in float32
TEXT: dict[str, Any] = {"type": "string", "minLength": 1}
TRUTH: dict[str, Any] = {"anyOf": [{"type": "boolean"}, {"enum": [0, 1]}]}  # true/false, 1/0


def _cell(feature: Feature | None) -> dict[str, Any]:
    """One value: text (not empty: an empty text is a missing value), a bool, a category's
    value (text or a number), or a finite number in the float32 range; null where the column
    may be missing."""
    kind = feature.kind if feature is not None else None
    cell: dict[str, Any] = {STRING: TEXT, BOOL: TRUTH}.get(kind or "", NUMBER)
    if kind == CATEGORY:
        cell = {"anyOf": [TEXT, NUMBER]}
        if feature is not None and feature.categories:
            cell["examples"] = list(feature.categories[:20])
    if feature is not None and feature.nullable:
        return {"anyOf": [cell, {"type": "null"}]}
    return cell


def _features(limits: Limits) -> list[Feature | None]:
    if limits.schema is not None and limits.schema.features:
        return list(limits.schema.features)
    if limits.features:
        return list(FeatureSchema.numeric(limits.features).features)
    return [None] * limits.n_features


def _row(limits: Limits) -> dict[str, Any]:
    cells = [_cell(f) for f in _features(limits)]
    return {
        "type": "array",
        "prefixItems": cells,
        "items": False,
        "minItems": len(cells),
        "maxItems": len(cells),
    }


def _record(limits: Limits) -> dict[str, Any]:
    features = [f for f in _features(limits) if f is not None]
    return {
        "type": "object",
        "properties": {f.name: _cell(f) for f in features},
        "required": [f.name for f in features],
        "additionalProperties": False,
    }


def _rows(limits: Limits, records: bool) -> dict[str, Any]:
    """Rows all as lists, or (where the columns are named) all as records."""

    def of(item: dict[str, Any]) -> dict[str, Any]:
        return {"type": "array", "items": item, "minItems": 1, "maxItems": limits.max_rows}

    if records and limits.features:
        return {"anyOf": [of(_row(limits)), of(_record(limits))]}
    return of(_row(limits))


def score_body_schema(limits: Limits) -> dict[str, Any]:
    """One of the five spellings; a body carrying two of them is refused (which one counts?)."""
    named: dict[str, Any] = {
        "type": "object",
        "properties": {"data": _rows(limits, records=True), "columns": False},
        "required": ["data"],
    }
    table: dict[str, Any] = named
    if limits.features:  # columns (in model order) and rows of values in that order
        columns: dict[str, Any] = {"const": list(limits.features)}
        table = {
            "anyOf": [
                named,
                {
                    "type": "object",
                    "properties": {"columns": columns, "data": _rows(limits, records=False)},
                    "required": ["columns", "data"],
                },
            ]
        }
    shapes = {
        "inputs": _rows(limits, records=True),
        "dataframe_records": _rows(limits, records=True),
        "data": _rows(limits, records=True),
        "dataframe_split": table,
        "input_data": table,
    }
    return {
        "anyOf": [
            {
                "type": "object",
                "required": [key],
                "properties": {k: (shape if k == key else False) for k in SCORE_KEYS},
            }
            for key, shape in shapes.items()
        ]
    }


def _typed_data() -> list[dict[str, Any]]:
    """(datatype, data value) per family of the numeric v2 datatypes: JSON numbers for FP,
    whole numbers for INT/UINT, true/false for BOOL."""
    numeric = sorted(V2_NUMERIC)
    return [
        {"datatype": {"enum": [d for d in numeric if d.startswith("FP")]}, "cell": NUMBER},
        {
            "datatype": {"enum": [d for d in numeric if d.startswith(("INT", "UINT"))]},
            "cell": {**NUMBER, "type": "integer"},
        },
        {"datatype": {"enum": ["BOOL"]}, "cell": {"type": "boolean"}},
    ]


def _rows_dimension(limits: Limits) -> dict[str, Any]:
    """A tensor shape's first entry: the row count, 1 to the row limit."""
    return {"type": "integer", "minimum": 1, "maximum": limits.max_rows}


def _matrix_tensors(limits: Limits) -> list[dict[str, Any]]:
    n = limits.n_features
    tensors = []
    for family in _typed_data():
        cell = family["cell"]
        tensors.append(
            {
                "type": "object",
                "properties": {
                    "name": {"type": "string", "not": {"enum": list(limits.features)}},
                    "shape": {
                        "type": "array",
                        "prefixItems": [_rows_dimension(limits), {"const": n}],
                        "items": False,
                        "minItems": 2,
                    },
                    "datatype": family["datatype"],
                    "data": {  # flat, row-major; or nested as rows
                        "anyOf": [
                            {"type": "array", "items": cell, "minItems": n},
                            {
                                "type": "array",
                                "minItems": 1,
                                "items": {
                                    "type": "array",
                                    "items": cell,
                                    "minItems": n,
                                    "maxItems": n,
                                },
                            },
                        ]
                    },
                },
                "required": ["name", "shape", "datatype", "data"],
            }
        )
    return tensors


def _column_tensor(feature: Feature, limits: Limits) -> dict[str, Any]:
    families: list[dict[str, Any]]
    if feature.kind == STRING:
        families = [{"datatype": {"const": "BYTES"}, "cell": _cell(feature)}]
    else:  # a bool: BOOL, or 0/1 of a numeric type; a category: BYTES or a number
        families = _typed_data()
        if feature.kind == BOOL:
            families = [{**f, "cell": {"enum": [0, 1]}} for f in families[:2]] + families[2:]
        if feature.kind == CATEGORY:
            families = [{"datatype": {"const": "BYTES"}, "cell": TEXT}, *families[:2]]
        if feature.nullable:
            for family in families:
                family["cell"] = {"anyOf": [family["cell"], {"type": "null"}]}
    shape = {
        "type": "array",
        "prefixItems": [_rows_dimension(limits), {"const": 1}],
        "items": False,
        "minItems": 1,
    }
    return {
        "anyOf": [
            {
                "type": "object",
                "properties": {
                    "name": {"const": feature.name},
                    "shape": shape,
                    "datatype": family["datatype"],
                    "data": {"type": "array", "items": family["cell"], "minItems": 1},
                },
                "required": ["name", "shape", "datatype", "data"],
            }
            for family in families
        ]
    }


def infer_body_schema(limits: Limits, outputs: list[str]) -> dict[str, Any]:
    """One [rows, features] tensor (all-number models), or one tensor per column in order."""
    forms: list[dict[str, Any]] = []
    if not limits.mixed:
        forms.extend(
            {"type": "array", "prefixItems": [t], "items": False, "minItems": 1}
            for t in _matrix_tensors(limits)
        )
    features = [f for f in _features(limits) if f is not None]
    if features:
        columns = [_column_tensor(f, limits) for f in features]
        forms.append(
            {
                "type": "array",
                "prefixItems": columns,
                "items": False,
                "minItems": len(columns),
            }
        )
    return {
        "type": "object",
        "properties": {
            "id": {"type": "string"},
            "inputs": forms[0] if len(forms) == 1 else {"anyOf": forms},
            "outputs": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {"name": {"enum": outputs}},
                    "required": ["name"],
                },
            },
            "parameters": {"type": "object"},
        },
        "required": ["inputs"],
    }
