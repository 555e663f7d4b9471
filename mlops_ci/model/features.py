"""The input contract of a model version: its columns in order, each a number or text, and
which of them may be missing — and how every value, missing ones included, reaches the model.

Recorded once, when `package` writes the model's manifest (from the evaluation data the model
was checked on and a probe of the model), and read by everything that feeds the model
afterwards: serving (/score and v2), batch scoring and drift. This module is the one place
that decides it:

- a column is ``nullable`` when the evaluation data has missing values in it (compare scored
  such rows) or the model scores a missing value (its pipeline imputes, its trees route NaN);
  a missing value anywhere else is refused, with the same words on every path;
- an empty text is a missing text, as a CSV file reads it (compare reads evaluate.data so);
- the native model gets a pandas DataFrame as ``read_csv`` gives one: numbers as float64 with
  NaN, text as Python strings with NaN where missing (:func:`native_frame`);
- an ONNX graph gets float32 numbers with NaN, and text as strings with ``""`` where missing
  (:func:`string_values`; the converter is given an imputer of ``""`` for that, see
  ``packaging/frameworks.py``). ``package`` proves both on the evaluation rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mlops_ci.errors import InputError

NUMBER, STRING = "number", "string"
KINDS = (NUMBER, STRING)


@dataclass(frozen=True)
class Feature:
    name: str
    kind: str  # number | string
    nullable: bool = False  # may be missing: the evaluation data has gaps, or the model imputes


@dataclass(frozen=True)
class FeatureSchema:
    features: tuple[Feature, ...]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.features)

    @property
    def all_numeric(self) -> bool:
        return all(f.kind == NUMBER for f in self.features)

    @property
    def strings(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.features if f.kind == STRING)

    @property
    def nullable(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.features if f.nullable)

    def with_nullable(self, names: tuple[str, ...]) -> FeatureSchema:
        """The schema with ``names`` nullable too (those already nullable stay so)."""
        return FeatureSchema(
            tuple(Feature(f.name, f.kind, f.nullable or f.name in names) for f in self.features)
        )

    def to_list(self) -> list[dict[str, Any]]:
        return [
            {"name": f.name, "kind": f.kind, **({"nullable": True} if f.nullable else {})}
            for f in self.features
        ]

    @staticmethod
    def from_list(items: Any, where: str) -> FeatureSchema:
        """The schema as a manifest stores it; anything else is an error naming ``where``."""
        if not isinstance(items, list):
            raise InputError(f"{where}: 'schema' must be a list of {{name, kind}}")
        out = []
        for i, item in enumerate(items):
            if (
                not isinstance(item, dict)
                or not isinstance(item.get("name"), str)
                or item.get("kind") not in KINDS
                or not isinstance(item.get("nullable", False), bool)
            ):
                raise InputError(
                    f'{where}: schema[{i}] must be {{"name": text, "kind": number|string, '
                    '"nullable": true|false}'
                )
            out.append(Feature(item["name"], item["kind"], item.get("nullable", False)))
        return FeatureSchema(tuple(out))

    @staticmethod
    def numeric(names: tuple[str, ...]) -> FeatureSchema:
        """The schema of packages written before kinds were recorded: every column a number."""
        return FeatureSchema(tuple(Feature(n, NUMBER) for n in names))

    @staticmethod
    def of_frame(frame: Any, where: str = "evaluate.data") -> FeatureSchema:
        """Kinds from a DataFrame's dtypes: numbers and booleans are numbers, text and
        categories are strings; dates and other objects are refused, naming the column. A
        column with missing values in it is nullable: the model was judged on such rows."""
        out = []
        for name, dtype in frame.dtypes.items():
            gaps = bool(frame[name].isna().any())
            out.append(Feature(str(name), _kind(dtype, str(name), where), gaps))
        return FeatureSchema(tuple(out))


def _kind(dtype: Any, name: str, where: str) -> str:
    if dtype.kind in "biuf":
        return NUMBER
    if dtype.kind in "OSU" or str(dtype) in ("category", "string", "str"):
        return STRING
    raise InputError(
        f"{where}: column '{name}' has type {dtype}; a feature must be a number or text",
        hint="convert it in the data (e.g. a date to its parts) before the model sees it",
    )


def trained_columns(model: Any) -> tuple[str, ...] | None:
    """The columns a model was fitted on, in its order (scikit-learn's ``feature_names_in_``,
    also on Pipelines, XGBoost and LightGBM estimators and per-column ONNX models); None when
    it was fitted on a bare matrix."""
    try:
        names = getattr(model, "feature_names_in_", None)
    except Exception:  # some estimators raise other errors from the property when unfitted
        names = None
    if names is None:
        return None
    return tuple(str(n) for n in names)


def fitted_dtypes(model: Any) -> dict[str, str]:
    """The kinds a fitted model records of its columns beyond number and text ({column:
    category | bool}); empty when it records none. Called beside the model (the runner's
    child), its answer travels as ``RemoteModel.model_dtypes``."""
    return {}


def model_frame(model: Any, frame: Any, where: str, label: str = "the") -> Any:
    """The columns of ``frame`` the model was trained on, in its order, so a candidate with a
    new column and a production model without it are each scored with their own columns.
    A column the model needs and the data lacks is an error naming it."""
    names = trained_columns(model)
    if names is None or tuple(str(c) for c in frame.columns) == names:
        return frame
    missing = [n for n in names if n not in frame.columns]
    if missing:
        raise InputError(
            f"{where}: {label} model was trained on column(s) {', '.join(missing)}, which the "
            "data does not have; it cannot be scored on it",
            hint="evaluate.data must hold every column either model was trained on",
        )
    return frame[list(names)]


def is_missing(value: Any) -> bool:
    """A missing value as the contract knows it: null/None, NaN, or an empty text."""
    return value is None or value == "" or (isinstance(value, float) and value != value)


def string_values(values: Any) -> Any:
    """A column as the text ONNX string tensors take: missing values become empty strings."""
    import numpy as np

    def text(v: Any) -> str:
        if is_missing(v):
            return ""
        return v if isinstance(v, str) else str(v)

    return np.array([text(v) for v in values], dtype=object)


def native_text(values: Any) -> Any:
    """A text column as the native model saw it in compare (pandas' ``read_csv``): strings,
    and NaN where the value is missing (None or empty)."""
    import numpy as np

    return np.array([np.nan if is_missing(v) else v for v in values], dtype=object)


def native_frame(schema: FeatureSchema, columns: Any) -> Any:
    """The DataFrame the native model scores: ``columns`` (1-D arrays by name, or a matrix in
    schema order) with numbers as float64 (NaN missing) and text as :func:`native_text`."""
    import numpy as np
    import pandas as pd

    data = {}
    for j, f in enumerate(schema.features):
        column = columns[f.name] if isinstance(columns, dict) else columns[:, j]
        if f.kind == STRING:
            data[f.name] = native_text(column)
        else:
            data[f.name] = np.asarray(column, dtype=np.float64)
    return pd.DataFrame(data, columns=list(schema.names))


def table_of_frame(schema: FeatureSchema, frame: Any) -> dict[str, Any]:
    """A DataFrame's rows as the request parsers hand them on: 1-D columns by name, numbers
    as float64 (NaN missing), text as strings with None where missing — what ``package``
    feeds the packaged model to prove it answers like the native one."""
    import numpy as np

    table = {}
    for f in schema.features:
        values = frame[f.name].to_numpy()
        if f.kind == STRING:
            table[f.name] = np.array(
                [None if is_missing(v) else (v if isinstance(v, str) else str(v)) for v in values],
                dtype=object,
            )
        else:
            table[f.name] = np.asarray(values, dtype=np.float64)
    return table
