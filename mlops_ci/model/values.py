"""What a value of each kind of column is, the same on every path: a missing value, a bool
(true/false, True/False in any case, 1/0), a category's value (text or a number, cast to the
type of its categories). ``features`` decides which columns are of which kind; the request
parsers, batch-score and the reading of evaluate.data ask here what a value is, and say a
refused one in the words of :func:`refusal`."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

BOOL, CATEGORY = "bool", "category"
TRUE, FALSE = ("true", "1"), ("false", "0")  # the words a bool column takes, in any case
_INTEGER = re.compile(r"[+-]?\d+")
_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


def is_missing(value: Any) -> bool:
    """A missing value as the contract knows it: null/None, NaN, or an empty text."""
    return value is None or value == "" or (isinstance(value, float) and value != value)


def bool_value(value: Any) -> float | None:
    """1.0 or 0.0 for a value a bool column takes (true/false, True/False in any case, 1/0),
    NaN for a missing one, None for anything else."""
    import numpy as np

    if isinstance(value, (bool, np.bool_)):
        return 1.0 if value else 0.0
    if is_missing(value):
        return float("nan")
    if isinstance(value, (int, float, np.integer, np.floating)):
        return float(value) if value in (0, 1) else None
    if isinstance(value, str):
        word = value.strip().lower()
        return 1.0 if word in TRUE else 0.0 if word in FALSE else None
    return None


def category_value(value: Any, cast: type | None = None) -> Any:
    """A category's value: text or a number (numpy's as Python's), None when missing, cast to
    ``cast``, the type of the column's categories, where it converts; ``REFUSED`` for
    anything else (a bool, a list, an infinite number)."""
    import math

    if hasattr(value, "item") and not isinstance(value, (str, float, int)):
        value = value.item()  # numpy scalars
    if is_missing(value):
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        return REFUSED
    if isinstance(value, float) and not math.isfinite(value):
        return REFUSED
    if cast is str and not isinstance(value, str):
        whole = isinstance(value, float) and value.is_integer()
        return str(int(value)) if whole else repr(value) if isinstance(value, float) else str(value)
    if cast is int:
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str) and _INTEGER.fullmatch(value.strip()):
            return int(value)
    if cast is float and isinstance(value, (int, str)):
        try:
            number = float(value)
        except ValueError:
            return value
        return number if math.isfinite(number) else value
    return value  # as given: outside the categories, the model scores it as it would itself


REFUSED = object()  # category_value: not a value a category takes


def as_read_csv(texts: list[Any]) -> list[Any]:
    """A category column of CSV text as ``read_csv`` types a column (compare reads
    evaluate.data so): whole numbers where every value is one, numbers where every value is
    one, else the text; missing values (None, empty) stay missing."""
    present = [t.strip() for t in texts if isinstance(t, str) and t]
    if present and all(_INTEGER.fullmatch(t) for t in present):
        return [int(t) if isinstance(t, str) and t else t for t in texts]
    if present and all(_NUMBER.fullmatch(t) for t in present):
        return [float(t) if isinstance(t, str) and t else t for t in texts]
    return texts


def cast_of(categories: tuple[Any, ...]) -> type | None:
    """The type values of a category column are cast to: its categories' type."""
    if not categories:
        return None
    if all(isinstance(c, str) for c in categories):
        return str
    if all(type(c) is int for c in categories):
        return int
    if all(isinstance(c, (int, float)) for c in categories):
        return float
    return None


def parse(
    kind: str, categories: tuple[Any, ...], values: Any
) -> tuple[npt.NDArray[Any], npt.NDArray[np.bool_]]:
    """A bool or category column's values as the request parsers hand them on (a bool: 1.0,
    0.0, NaN where missing; a category: an object array of its values, None where missing),
    and the mask of the values its kind does not take (they are NaN / None in the first)."""
    import numpy as np  # noqa: F811  (at run time; the one above is for annotations)

    values = values if isinstance(values, np.ndarray) else np.asarray(values, dtype=object)
    if kind == BOOL:
        if values.dtype.kind == "b":
            return values.astype(np.float64), np.zeros(len(values), np.bool_)
        if values.dtype.kind == "f":
            bad = ~(np.isnan(values) | (values == 0) | (values == 1))
            return np.where(bad, np.nan, values).astype(np.float64), bad
        said = [bool_value(v) for v in values.tolist()]
        bad = np.array([v is None for v in said], np.bool_)
        return np.array([np.nan if v is None else v for v in said], np.float64), bad
    cast = cast_of(categories)
    out = np.empty(len(values), dtype=object)
    out[:] = [category_value(v, cast) for v in values.tolist()]
    bad = np.array([v is REFUSED for v in out], np.bool_)
    out[bad] = None
    return out, bad


def refusal(kind: str, value: Any) -> str:
    """What is wrong with ``value`` in a column of ``kind``, the same words on every path."""
    if isinstance(value, str):
        shown = repr(value[:40])
    elif isinstance(value, (bool, int, float)) or value is None:
        shown = "null" if value is None else repr(value)
    else:
        shown = f"a {type(value).__name__}"
    if kind == BOOL:
        return f"{shown} is not true or false"
    return f"{shown} is not a category (text or a number)"
