"""Converters for XGBoost and LightGBM estimators, registered with skl2onnx when a model uses them.

skl2onnx converts scikit-learn; onnxmltools holds the XGBoost and LightGBM converters. Once
registered, those estimators convert alone or as the last step of a scikit-learn Pipeline,
with the same ``label``/``probabilities`` (or ``variable``) outputs as any other model.
"""

from __future__ import annotations

from typing import Any

from mlops_ci.errors import InputError

_CLASSIFIER_OPTIONS = {"nocl": [True, False], "zipmap": [True, False, "columns"]}
_done: set[str] = set()


def estimators(model: Any) -> list[Any]:
    """The model and every estimator nested in it (pipeline steps, column transformers: the
    fitted ``transformers_`` where there are, which are what predicts and converts)."""
    found = [model]
    for _, step in getattr(model, "steps", []):
        found += estimators(step)
    fitted = getattr(model, "transformers_", None)
    for item in fitted if fitted is not None else getattr(model, "transformers", []) or []:
        if len(item) >= 2 and not isinstance(item[1], str):
            found += estimators(item[1])
    return found


def framework_of(model: Any) -> str | None:
    """``xgboost`` or ``lightgbm`` when such an estimator is in the model, else None."""
    for est in estimators(model):
        root = type(est).__module__.split(".")[0]
        if root in ("xgboost", "lightgbm"):
            return root
    return None


def distributions(model: Any) -> tuple[str, ...]:
    """Distributions a native model of this framework needs to load and score, besides
    scikit-learn's (XGBoost's CPU-only wheel and its full one are both accepted)."""
    framework = framework_of(model)
    if framework == "xgboost":
        from importlib import metadata

        for dist in ("xgboost", "xgboost-cpu"):
            try:
                metadata.version(dist)
                return (dist,)
            except metadata.PackageNotFoundError:
                continue
        return ("xgboost",)
    return (framework,) if framework else ()


def for_conversion(model: Any) -> Any:
    """The model as the converters can read it, scoring the same (the parity check holds it
    to that): XGBoost boosters trained on a DataFrame name their features by column, the
    converter wants f0, f1, ... (the order is the same); a ``SimpleImputer`` of text columns
    that fills NaN fills the empty string instead, the one missing text a string tensor can
    carry (the contract feeds missing text to ONNX as ``""``, see ``model/features.py``)."""
    xgboost = framework_of(model) == "xgboost"
    text_imputers = [est for est in estimators(model) if _imputes_text_nan(est)]
    if not xgboost and not text_imputers:
        return model
    import copy

    clone = copy.deepcopy(model)
    for est in estimators(clone):
        if type(est).__module__.split(".")[0] == "xgboost":
            est.get_booster().feature_names = None
        if _imputes_text_nan(est):
            est.missing_values = ""
    return clone


def _imputes_text_nan(est: Any) -> bool:
    """A fitted SimpleImputer of text (object) columns whose missing value is NaN or None."""
    if type(est).__name__ != "SimpleImputer" or not hasattr(est, "statistics_"):
        return False
    missing = est.missing_values
    is_nan = missing is None or (isinstance(missing, float) and missing != missing)
    return is_nan and getattr(getattr(est.statistics_, "dtype", None), "kind", "") == "O"


_patched: list[bool] = []


def patch_converters() -> None:
    """skl2onnx (1.20) writes the HistGradientBoosting leaves' ``missing_go_to_left`` as a
    Python bool into an integer attribute, which onnx >= 1.17 refuses ('Expected an int, got
    a boolean'): give its tree helper an int, the value the ONNX operator defines."""
    if _patched:
        return
    _patched.append(True)
    from skl2onnx.common import tree_ensemble

    original = tree_ensemble.add_node

    def add_node(*args: Any, **kwargs: Any) -> Any:
        if "nodes_missing_value_tracks_true" in kwargs:
            kwargs["nodes_missing_value_tracks_true"] = int(
                kwargs["nodes_missing_value_tracks_true"]
            )
        return original(*args, **kwargs)

    tree_ensemble.add_node = add_node


def register_converters(model: Any) -> bool:
    """Make skl2onnx know the XGBoost/LightGBM estimators this model holds (once a process);
    True when the model holds one."""
    framework = framework_of(model)
    if framework is None:
        return False
    if framework in _done:
        return True
    try:
        if framework == "xgboost":
            _register_xgboost()
        else:
            _register_lightgbm()
    except ImportError as err:
        raise InputError(
            f"converting a {framework} model to ONNX needs onnxmltools ({err})",
            hint="pip install onnxmltools, or set package.onnx: false",
        ) from None
    _done.add(framework)
    return True


def _register_xgboost() -> None:
    from onnxmltools.convert.xgboost.operator_converters.XGBoost import convert_xgboost
    from skl2onnx import update_registered_converter
    from skl2onnx.common.shape_calculator import (
        calculate_linear_classifier_output_shapes,
        calculate_linear_regressor_output_shapes,
    )
    from xgboost import XGBClassifier, XGBRegressor

    update_registered_converter(
        XGBClassifier,
        "XGBoostXGBClassifier",
        calculate_linear_classifier_output_shapes,
        convert_xgboost,
        options=_CLASSIFIER_OPTIONS,
    )
    update_registered_converter(
        XGBRegressor,
        "XGBoostXGBRegressor",
        calculate_linear_regressor_output_shapes,
        convert_xgboost,
    )


def _register_lightgbm() -> None:
    from lightgbm import LGBMClassifier, LGBMRegressor
    from onnxmltools.convert.lightgbm.operator_converters.LightGbm import convert_lightgbm
    from skl2onnx import update_registered_converter
    from skl2onnx.common.shape_calculator import (
        calculate_linear_classifier_output_shapes,
        calculate_linear_regressor_output_shapes,
    )

    update_registered_converter(
        LGBMClassifier,
        "LightGbmLGBMClassifier",
        calculate_linear_classifier_output_shapes,
        convert_lightgbm,
        options=_CLASSIFIER_OPTIONS,
    )
    update_registered_converter(
        LGBMRegressor,
        "LightGbmLGBMRegressor",
        calculate_linear_regressor_output_shapes,
        convert_lightgbm,
        options={"split": None},
    )
