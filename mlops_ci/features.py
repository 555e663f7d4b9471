"""The input schema of a model: its feature columns in order, each a number or a string.

Recorded once, when `package` writes the model's manifest (from the evaluation data the model
was checked on), and read by everything that feeds the model afterwards: serving, batch
scoring and drift. Numbers travel as float32, strings as text, so a pipeline that encodes a
string column itself (``OneHotEncoder`` in a ``ColumnTransformer``) gets the text it was
trained on.
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
    nullable: bool = False  # a number the model scores when missing (its pipeline imputes)


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
        return FeatureSchema(tuple(Feature(f.name, f.kind, f.name in names) for f in self.features))

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
        categories are strings; dates and other objects are refused, naming the column."""
        out = []
        for name, dtype in frame.dtypes.items():
            out.append(Feature(str(name), _kind(dtype, str(name), where)))
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


def string_values(values: Any) -> Any:
    """A column as the text ONNX string tensors take: missing values become empty strings."""
    import numpy as np

    def text(v: Any) -> str:
        if v is None or (isinstance(v, float) and v != v):
            return ""
        return v if isinstance(v, str) else str(v)

    return np.array([text(v) for v in values], dtype=object)
