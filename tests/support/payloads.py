"""Limits and feature schemas the request-parsing tests share, and a v2 infer body of named
tensors (one per column)."""

from __future__ import annotations

from mlops_ci.model.features import FeatureSchema
from mlops_ci.serve.payload import Limits

LIMITS = Limits(n_features=2, features=("a", "b"), max_rows=3)


MIXED = FeatureSchema.from_list(
    [{"name": "size", "kind": "number"}, {"name": "colour", "kind": "string"}], "test"
)


MIXED_LIMITS = Limits(2, MIXED.names, 10, MIXED)


NULLABLE_TEXT = FeatureSchema.from_list(
    [{"name": "colour", "kind": "string", "nullable": True}, {"name": "size", "kind": "number"}],
    "test",
)


def v2_columns(*tensors: dict[str, object]) -> bytes:
    """A v2 infer body of these named tensors alone (no id, no outputs asked for)."""
    import orjson

    return orjson.dumps({"inputs": list(tensors)})


# A bool and a category column beside a number (KINDS), and a number and a bool (NUMBER_BOOL).
KINDS = FeatureSchema.from_list(
    [
        {"name": "x", "kind": "number"},
        {"name": "flag", "kind": "bool"},
        {"name": "colour", "kind": "category", "categories": ["red", "green"]},
        {"name": "size", "kind": "category", "nullable": True, "categories": [1, 2, 3]},
    ],
    "test",
)


KINDS_LIMITS = Limits(4, KINDS.names, 10, KINDS)


NUMBER_BOOL = FeatureSchema.from_list(
    [{"name": "x", "kind": "number"}, {"name": "flag", "kind": "bool", "nullable": True}], "test"
)


NUMBER_BOOL_LIMITS = Limits(2, NUMBER_BOOL.names, 10, NUMBER_BOOL)
