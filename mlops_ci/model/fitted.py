"""What a fitted model records of its columns beyond number and text: which it was fitted on as
a pandas ``category`` (and with which categories, in its order) or as a ``bool``.

Read beside the model only (the model runner's child calls :func:`recorded` through
``features.fitted_dtypes``), from what each library keeps after ``fit``:

- LightGBM (the scikit-learn API or a ``Booster``): ``pandas_categorical`` lists the categories
  of every category column in training order; the model's ``feature_infos`` say which columns
  those are (a categorical feature's infos are its codes, a numeric one's ``[min:max]``);
- HistGradientBoosting with ``categorical_features="from_dtype"``: ``is_categorical_`` with
  ``feature_names_in_``, the categories of its ordinal encoder (it maps values, not codes);
- XGBoost: the booster's ``feature_types`` (``c`` a category, ``i`` a bool) and, from 3.1, its
  categories;
- CatBoost: ``get_cat_feature_indices()`` (it takes a category's value, so no categories).

A Pipeline is read through its first step (the one the rows reach as they are). Anything else,
or anything that fails, records nothing: the evaluation data and ``evaluate.dtypes`` decide.
"""

from __future__ import annotations

from typing import Any

CATEGORY, BOOL = "category", "bool"
# {column: (kind, categories)}; categories empty where the model keeps none
Recorded = dict[str, tuple[str, tuple[Any, ...]]]


def recorded(model: Any) -> Recorded:
    """The category and bool columns ``model`` records, or {} (never raises)."""
    steps = getattr(model, "steps", None)
    if isinstance(steps, list) and steps:
        model = steps[0][1]
    try:
        root = type(model).__module__.split(".")[0]
        if root == "lightgbm":
            return _lightgbm(model)
        if root == "xgboost":
            return _xgboost(model)
        if root == "catboost":
            return _catboost(model)
        if root == "sklearn" and getattr(model, "is_categorical_", None) is not None:
            return _hist_gradient_boosting(model)
    except Exception:  # a model of another version or shape: it records nothing we can read
        return {}
    return {}


def _scalars(values: Any) -> tuple[Any, ...]:
    """Categories as JSON scalars (numpy's as Python's); () when one is of another type."""
    out = []
    for value in list(values):
        value = value.item() if hasattr(value, "item") and not isinstance(value, str) else value
        if isinstance(value, float) and value != value:
            continue  # NaN: a missing value, not a category
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            return ()
        out.append(value)
    return tuple(out)


def _lightgbm(model: Any) -> Recorded:
    booster = model if hasattr(model, "pandas_categorical") else getattr(model, "booster_", None)
    categories = getattr(booster, "pandas_categorical", None)
    if booster is None or not categories:
        return {}
    header = booster.model_to_string(num_iteration=1)  # one tree: the header is what we read
    infos: list[str] = []
    for line in header.splitlines():
        if line.startswith("feature_infos="):
            infos = line.removeprefix("feature_infos=").split(" ")
            break
    names = [str(n) for n in booster.feature_name()]
    found = [n for n, info in zip(names, infos, strict=False) if info[:1] not in ("[", "n")]
    if len(found) != len(categories):  # an ordered category is fitted as a number: unsure
        return {}
    return {n: (CATEGORY, _scalars(c)) for n, c in zip(found, categories, strict=True)}


def _hist_gradient_boosting(model: Any) -> Recorded:
    mask = list(model.is_categorical_)
    names = getattr(model, "feature_names_in_", None)
    encoder = getattr(model, "_preprocessor", None)
    if names is None or encoder is None:  # categories given as codes, not a pandas category
        return {}
    try:
        fitted = list(encoder.named_transformers_["encoder"].categories_)
    except (AttributeError, KeyError, TypeError):
        fitted = []
    columns = [str(n) for n, categorical in zip(names, mask, strict=True) if categorical]
    if len(fitted) != len(columns):
        fitted = [()] * len(columns)
    return {n: (CATEGORY, _scalars(c)) for n, c in zip(columns, fitted, strict=True)}


def _xgboost(model: Any) -> Recorded:
    booster = model.get_booster() if hasattr(model, "get_booster") else model
    names, types = booster.feature_names, booster.feature_types
    if not names or not types:
        return {}
    categories: dict[str, tuple[Any, ...]] = {}
    try:  # XGBoost 3.1+ keeps the categories it was fitted with
        for name, values in booster.get_categories(export_to_arrow=True).to_arrow() or []:
            if values is not None:
                categories[str(name)] = _scalars(values.to_pylist())
    except (AttributeError, TypeError, ValueError):
        pass
    out: Recorded = {}
    for name, kind in zip(names, types, strict=True):
        if kind == "c":
            out[str(name)] = (CATEGORY, categories.get(str(name), ()))
        elif kind == "i":
            out[str(name)] = (BOOL, ())
    return out


def _catboost(model: Any) -> Recorded:
    names = list(model.feature_names_)
    return {str(names[i]): (CATEGORY, ()) for i in model.get_cat_feature_indices()}
