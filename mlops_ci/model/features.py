"""The input contract of a model version: its columns in order, each a number, text, a bool or
a category, and which of them may be missing — and how every value, missing ones included,
reaches the model.

Recorded once, when `package` writes the model's manifest (from the evaluation data the model
was checked on and a probe of the model), and read by everything that feeds the model
afterwards: serving (/score and v2), batch scoring and drift. This module is the one place
that decides it:

- a column's kind is what the fitted model records of it (``fitted.py``), else
  ``evaluate.dtypes``, else the evaluation data's as ``read_csv`` types it;
- a column is ``nullable`` when the evaluation data has missing values in it (compare scored
  such rows) or the model scores a missing value (its pipeline imputes, its trees route NaN);
  a missing value anywhere else is refused, with the same words on every path;
- an empty text is a missing text, as a CSV file reads it (compare reads evaluate.data so);
- a bool takes true/false, True/False in any case, or 1/0; the request parsers hand it on as
  1.0/0.0 (NaN missing); a category takes text or a number, cast to its categories' type (a
  value outside them reaches the model, which scores it as missing, as it would itself);
- the native model gets a pandas DataFrame as compare gave it (:func:`native_frame`): numbers
  as float64 with NaN, text as Python strings with NaN where missing, bools as ``bool``
  (``boolean`` where one is missing), categories as a pandas ``category`` with the model's
  categories in its order (LightGBM's codes follow that order);
- an ONNX graph gets float32 numbers with NaN (a bool as 0/1), and text as strings with ``""``
  where missing (:func:`string_values`; the converter is given an imputer of ``""`` for that,
  see ``packaging/frameworks.py``); a category is converted and served as text
  (:func:`onnx_frame`), which the tree ensembles' converters refuse: those serve natively.
  ``package`` proves both on the evaluation rows.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, replace
from typing import Any

from mlops_ci.errors import InputError
from mlops_ci.model.values import BOOL as BOOL  # the kinds: re-exported, named here
from mlops_ci.model.values import CATEGORY as CATEGORY
from mlops_ci.model.values import is_missing, parse, refusal

NUMBER, STRING = "number", "string"
KINDS = (NUMBER, STRING, BOOL, CATEGORY)


@dataclass(frozen=True)
class Feature:
    name: str
    kind: str  # number | string | bool | category
    nullable: bool = False  # may be missing: the evaluation data has gaps, or the model imputes
    categories: tuple[Any, ...] = ()  # a category column's, in the order the model was given


@dataclass(frozen=True)
class FeatureSchema:
    features: tuple[Feature, ...]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.features)

    @property
    def all_numeric(self) -> bool:
        """Every column a number or a bool (0/1): one float matrix holds the rows."""
        return all(f.kind in (NUMBER, BOOL) for f in self.features)

    @property
    def strings(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.features if f.kind == STRING)

    @property
    def not_numeric(self) -> tuple[str, ...]:
        """The text and category columns (a request gives them one tensor each)."""
        return tuple(f.name for f in self.features if f.kind in (STRING, CATEGORY))

    @property
    def booleans(self) -> tuple[int, ...]:
        """Positions of the bool columns."""
        return tuple(j for j, f in enumerate(self.features) if f.kind == BOOL)

    @property
    def nullable(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.features if f.nullable)

    def with_nullable(self, names: tuple[str, ...]) -> FeatureSchema:
        """The schema with ``names`` nullable too (those already nullable stay so)."""
        return FeatureSchema(
            tuple(replace(f, nullable=f.nullable or f.name in names) for f in self.features)
        )

    def onnx_takes(self) -> FeatureSchema:
        """The schema of the ONNX graph converted from :func:`onnx_frame`: a category column
        is a text column there."""
        return FeatureSchema(
            tuple(
                Feature(f.name, STRING, f.nullable) if f.kind == CATEGORY else f
                for f in self.features
            )
        )

    def to_list(self) -> list[dict[str, Any]]:
        return [
            {
                "name": f.name,
                "kind": f.kind,
                **({"nullable": True} if f.nullable else {}),
                **({"categories": list(f.categories)} if f.categories else {}),
            }
            for f in self.features
        ]

    @staticmethod
    def from_list(items: Any, where: str) -> FeatureSchema:
        """The schema as a manifest stores it; anything else is an error naming ``where``."""
        if not isinstance(items, list):
            raise InputError(f"{where}: 'schema' must be a list of {{name, kind}}")
        out = []
        for i, item in enumerate(items):
            categories = item.get("categories", []) if isinstance(item, dict) else None
            if (
                not isinstance(item, dict)
                or not isinstance(item.get("name"), str)
                or item.get("kind") not in KINDS
                or not isinstance(item.get("nullable", False), bool)
                or not isinstance(categories, list)
                or not all(_scalar(c) for c in categories)
                or (categories and item["kind"] != CATEGORY)
            ):
                raise InputError(
                    f'{where}: schema[{i}] must be {{"name": text, "kind": '
                    'number|string|bool|category, "nullable": true|false, "categories": '
                    "[text or numbers] (a category's)}"
                )
            out.append(
                Feature(item["name"], item["kind"], item.get("nullable", False), tuple(categories))
            )
        return FeatureSchema(tuple(out))

    @staticmethod
    def numeric(names: tuple[str, ...]) -> FeatureSchema:
        """The schema of packages written before kinds were recorded: every column a number."""
        return FeatureSchema(tuple(Feature(n, NUMBER) for n in names))

    @staticmethod
    def of_frame(frame: Any, where: str = "evaluate.data") -> FeatureSchema:
        """Kinds from a DataFrame's dtypes: numbers, text, bools (``bool``, ``boolean``) and
        categories (with theirs, in order); dates and other objects are refused, naming the
        column. A column with missing values in it is nullable: the model was judged on such
        rows."""
        out = []
        for name, dtype in frame.dtypes.items():
            gaps = bool(frame[name].isna().any())
            kind = _kind(dtype, str(name), where)
            categories = _categories(dtype, str(name), where) if kind == CATEGORY else ()
            out.append(Feature(str(name), kind, gaps, categories))
        return FeatureSchema(tuple(out))


def _scalar(value: Any) -> bool:
    return isinstance(value, (str, int, float)) and not isinstance(value, bool)


def _kind(dtype: Any, name: str, where: str) -> str:
    text = str(dtype)
    if text == "category":
        return CATEGORY
    if dtype.kind == "b" or text == "boolean":
        return BOOL
    if dtype.kind in "iuf":
        return NUMBER
    if dtype.kind in "OSU" or text in ("string", "str"):
        return STRING
    raise InputError(
        f"{where}: column '{name}' has type {dtype}; a feature must be a number, text, a bool "
        "or a category",
        hint="convert it in the data (e.g. a date to its parts) before the model sees it",
    )


def _categories(dtype: Any, name: str, where: str) -> tuple[Any, ...]:
    values = tuple(dtype.categories.tolist())
    if not all(_scalar(v) for v in values):
        raise InputError(
            f"{where}: category column '{name}' has categories of type "
            f"{dtype.categories.dtype}; a category must be text or a number"
        )
    return values


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
    from mlops_ci.model.fitted import recorded

    return {name: kind for name, (kind, _) in recorded(model).items()}


def fitted_categories(model: Any) -> dict[str, list[Any]]:
    """The categories of each category column, in the order the model was fitted with them,
    where it keeps them (called beside the model, as :func:`fitted_dtypes`)."""
    from mlops_ci.model.fitted import recorded

    return {name: list(found) for name, (_, found) in recorded(model).items() if found}


def fitted_features(model: Any) -> dict[str, Feature]:
    """The bool and category columns of ``model`` with their categories: what a model in the
    model runner said of itself (``model_dtypes``, ``model_categories``), else asked of the
    model here (a test's, or a user's ONNX graph, which records none)."""
    kinds = getattr(model, "model_dtypes", None)
    if isinstance(kinds, dict):  # a model in the runner: what its child said
        categories = getattr(model, "model_categories", None) or {}
    else:
        kinds, categories = fitted_dtypes(model), fitted_categories(model)
    return {
        str(name): Feature(str(name), kind, categories=tuple(categories.get(name) or ()))
        for name, kind in kinds.items()
        if kind in (BOOL, CATEGORY)
    }


def model_frame(model: Any, frame: Any, where: str, label: str = "the") -> Any:
    """The columns of ``frame`` the model was trained on, in its order, so a candidate with a
    new column and a production model without it are each scored with their own columns, and
    each column of the kind the model records of it (a bool, a category with its categories).
    A column the model needs and the data lacks, or a value its kind does not take, is an error
    naming it. A tensor model's rows (``tensors.Tensors``) are its named arrays, as they are."""
    from mlops_ci.model.tensors import Tensors  # numpy: not at the CLI's start

    if isinstance(frame, Tensors):
        return frame
    names = trained_columns(model)
    kinds = fitted_features(model)
    if names is not None and tuple(str(c) for c in frame.columns) != names:
        own = _as_renamed(names, [str(c) for c in frame.columns])
        missing = [n for n in names if n not in frame.columns and n not in own]
        if missing:
            raise InputError(
                f"{where}: {label} model was trained on column(s) {', '.join(missing)}, which "
                "the data does not have; it cannot be scored on it",
                hint="evaluate.data must hold every column either model was trained on",
            )
        frame = frame[[own.get(n, n) for n in names]]
        kinds = {own.get(n, n): replace(f, name=own.get(n, n)) for n, f in kinds.items()}
    return typed_frame(frame, kinds, where)


def _as_renamed(names: tuple[str, ...], columns: list[str]) -> dict[str, str]:
    """{the model's name: the data's} for the columns a framework renamed when it fitted them
    (LightGBM writes a space as ``_``: ``x 2`` is ``x_2`` in its ``feature_names_in_``); only
    where one data column alone fits, so the data's own names reach the package and serve."""
    renamed: dict[str, list[str]] = {}
    for column in columns:
        if " " in column:
            renamed.setdefault(column.replace(" ", "_"), []).append(column)
    return {n: renamed[n][0] for n in names if n not in columns and len(renamed.get(n, ())) == 1}


def read_kinds(frame: Any, declared: dict[str, str]) -> dict[str, Feature]:
    """The bool and category columns of a frame as ``read_csv`` read it: those ``declared``
    (``evaluate.dtypes``), and a column of True/False with gaps (which ``read_csv`` leaves
    as objects)."""
    kinds = {n: Feature(n, k) for n, k in declared.items() if k in (BOOL, CATEGORY)}
    for name in frame.columns:
        present = frame[name].dropna()
        if name in kinds or frame[name].dtype != object or present.empty:
            continue
        if all(isinstance(v, bool) for v in present.tolist()):
            kinds[str(name)] = Feature(str(name), BOOL)
    return kinds


def typed_frame(frame: Any, kinds: dict[str, Feature], where: str) -> Any:
    """``frame`` with each column named in ``kinds`` as the native model takes that kind (a
    bool, a category); a value the kind does not take is an error naming the file's line
    (``where``:LINE, the frame's index being its rows as ``read_csv`` numbered them)."""
    import pandas as pd

    changed = {}
    for name, feature in kinds.items():
        if name not in frame.columns or _native_already(frame[name], feature):
            continue
        values = frame[name].to_numpy(dtype=object, na_value=None)
        parsed, bad = column_of_kind(feature, values)
        if bad.any():
            rows = bad.nonzero()[0]
            first = frame.index[rows[0]]
            line = int(first) + 2 if hasattr(first, "__index__") else "?"
            raise InputError(
                f"{where}:{line}: column '{name}': {refusal(feature.kind, values[rows[0]])}"
                + (f" (and {len(rows) - 1} more rows)" if len(rows) > 1 else ""),
                hint="fix the data, or leave such cells empty for a missing value",
            )
        changed[name] = native_column(feature, parsed)
    if not changed:
        return frame
    out = frame.copy()
    for name, column in changed.items():
        out[name] = pd.Series(column, index=frame.index, name=name)
    return out


def schema_frame(schema: FeatureSchema, frame: Any) -> Any:
    """``frame`` with its bool and category columns as the native model takes them (a probe
    that set a column to NaN gets it back as a missing bool or category)."""
    kinds = {f.name: f for f in schema.features if f.kind in (BOOL, CATEGORY)}
    return typed_frame(frame, kinds, "the probe")


def _native_already(column: Any, feature: Feature) -> bool:
    """The column already has the form :func:`native_column` would give it."""
    dtype = column.dtype
    if feature.kind == BOOL:
        return dtype.kind == "b" or str(dtype) == "boolean"
    if feature.kind == CATEGORY and str(dtype) == "category":
        return not feature.categories or tuple(dtype.categories.tolist()) == feature.categories
    return False


def column_of_kind(feature: Feature, column: Any) -> tuple[Any, Any]:
    """A bool or category column's values as the request parsers hand them on, and the mask
    of those its kind does not take (``values.parse``)."""
    return parse(feature.kind, feature.categories, column)


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


def native_column(feature: Feature, values: Any) -> Any:
    """One column as the native model takes it: see :func:`native_frame`."""
    import numpy as np
    import pandas as pd

    if feature.kind == STRING:
        return native_text(values)
    if feature.kind == NUMBER:
        return np.asarray(values, dtype=np.float64)
    parsed, _ = column_of_kind(feature, values)  # refused values were named before: missing
    if feature.kind == BOOL:
        gaps = np.isnan(parsed)
        if gaps.any():
            return pd.array(np.where(gaps, None, parsed == 1.0), dtype="boolean")
        return parsed == 1.0
    known = set(feature.categories)
    new = [v for v in dict.fromkeys(parsed.tolist()) if v is not None and v not in known]
    with contextlib.suppress(TypeError):  # text and numbers: in the order they came
        new.sort()
    return pd.Categorical(parsed, categories=[*feature.categories, *new])


def native_frame(schema: FeatureSchema, columns: Any) -> Any:
    """The DataFrame the native model scores: ``columns`` (1-D arrays by name, or a matrix in
    schema order) with numbers as float64 (NaN missing), text as :func:`native_text`, bools
    as ``bool`` (``boolean`` where one is missing) and categories as a pandas ``category``
    with the schema's categories first, in their order."""
    import pandas as pd

    data = {}
    for j, f in enumerate(schema.features):
        column = columns[f.name] if isinstance(columns, dict) else columns[:, j]
        data[f.name] = native_column(f, column)
    return pd.DataFrame(data, columns=list(schema.names))


def table_of_frame(schema: FeatureSchema, frame: Any) -> dict[str, Any]:
    """A DataFrame's rows as the request parsers hand them on: 1-D columns by name, numbers
    as float64 (NaN missing), text as strings with None where missing, bools as 1.0/0.0 (NaN
    missing), categories as their values (None missing) — what ``package`` feeds the packaged
    model to prove it answers like the native one."""
    import numpy as np

    table = {}
    for f in schema.features:
        if f.kind in (BOOL, CATEGORY):
            values = frame[f.name].to_numpy(dtype=object, na_value=None)
            table[f.name] = column_of_kind(f, values)[0]
            continue
        values = frame[f.name].to_numpy()
        if f.kind == STRING:
            table[f.name] = np.array(
                [None if is_missing(v) else (v if isinstance(v, str) else str(v)) for v in values],
                dtype=object,
            )
        else:
            table[f.name] = np.asarray(values, dtype=np.float64)
    return table


def onnx_frame(frame: Any) -> Any:
    """``frame`` as an ONNX graph is converted from and fed: a bool column as 0/1 (NaN
    missing), a category column as its values' text (NaN missing); the rest as it is."""
    import numpy as np
    import pandas as pd

    out = {}
    for name in frame.columns:
        column = frame[name]
        if column.dtype.kind == "b" or str(column.dtype) == "boolean":
            column = pd.Series(
                column.to_numpy(dtype=np.float64, na_value=np.nan), index=frame.index
            )
        elif str(column.dtype) == "category":
            text = Feature(str(name), CATEGORY, categories=("",))  # cast to text
            values, _ = column_of_kind(text, column.to_numpy(dtype=object, na_value=None))
            column = pd.Series(native_text(values), index=frame.index, dtype=object)
        out[name] = column
    return pd.DataFrame(out, index=frame.index, columns=frame.columns)
