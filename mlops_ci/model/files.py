"""The model file a training command wrote, loaded as an object with scikit-learn's face.

- scikit-learn, and XGBoost/LightGBM estimators of their scikit-learn API: joblib/pickle, or
  ``.skops``;
- XGBoost's own ``.json``/``.ubj`` model file and LightGBM's own ``.txt`` file: loaded into the
  framework's scikit-learn estimator (``model.task`` says classifier or regressor);
- an MLflow model folder (``model.flavor: pyfunc``): :class:`~mlops_ci.model.pyfunc.PyfuncModel`;
- ``.onnx`` (``model.flavor: onnx``): an :class:`~mlops_ci.model.onnxmodel.OnnxModel`, scored with
  onnxruntime.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from mlops_ci.errors import InputError, TrainingError

ONNX_SUFFIX = ".onnx"
# Whose types a skops file may name and be loaded outside the sandbox: the frameworks'.
ALLOWED_ROOTS = ("sklearn", "numpy", "scipy", "xgboost", "lightgbm", "catboost")
# Containers of the standard library that estimators hold (skops does not trust them itself).
ALLOWED_NAMES = ("collections.OrderedDict", "collections.defaultdict", "collections.Counter")


def allowed_type(name: str) -> bool:
    """A class, or a numpy ufunc, of a framework on :data:`ALLOWED_ROOTS` (``builtins.eval``,
    ``functools.partial``, ``numpy.load`` and a user's own class are not)."""
    if name in ALLOWED_NAMES:
        return True
    parts = name.split(".")
    if parts[0] not in ALLOWED_ROOTS:
        return False
    import numpy as np

    for cut in range(len(parts) - 1, 0, -1):
        try:
            found: Any = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        try:
            for attr in parts[cut:]:
                found = getattr(found, attr)
        except AttributeError:
            return False
        return isinstance(found, (type, np.ufunc))
    return False


def allowed_types(names: list[str]) -> list[str]:
    return [n for n in names if allowed_type(n)]


def skops_trusted(path: Path, unrestricted: bool) -> list[str]:
    """The types to trust loading the skops file ``path``: those it names when ``unrestricted``
    (the sandbox, or train.isolation: off), else those on the allow-list, or an InputError
    naming the others."""
    import skops.io

    named = list(skops.io.get_untrusted_types(file=path))
    if unrestricted:
        return named
    refused = [n for n in named if not allowed_type(n)]
    if refused:
        raise InputError(
            f"{path.name}: names type(s) {', '.join(sorted(refused))}, which are not on the "
            "allow-list of types loaded outside a sandbox",
            hint="install bubblewrap so the model loads in the sandbox, or set "
            "train.isolation: off if you trust this file",
        )
    return named


def load_model_file(path: Path, task: str = "classification", unrestricted: bool = False) -> Any:
    """The model in ``path``, by its suffix; see the module docstring. Only the model runner's
    child calls this (``mlops_ci.model.worker``)."""
    if path.is_dir():  # an MLflow model folder (model.flavor: pyfunc)
        return load_folder(path, unrestricted, task)
    suffix = path.suffix.lower()
    if suffix == ".skops":
        import skops.io

        return skops.io.load(path, trusted=skops_trusted(path, unrestricted))
    if suffix in (".json", ".ubj"):
        return _xgboost(path, task)
    if suffix == ".txt":
        return _lightgbm(path, task)
    if suffix == ONNX_SUFFIX:
        from mlops_ci.model.onnxmodel import OnnxModel

        return OnnxModel.from_file(path, task)
    import joblib

    return joblib.load(path)


def _xgboost(path: Path, task: str) -> Any:
    import xgboost

    model = xgboost.XGBClassifier() if task == "classification" else xgboost.XGBRegressor()
    model.load_model(path)
    return model


def _lightgbm(path: Path, task: str) -> Any:
    """A LightGBM text model file as the scikit-learn estimator scoring with that booster.

    LightGBM has no public way to do this; these are the attributes its estimators read when
    predicting (lightgbm 4). Classes are the indices 0..k-1 the booster was trained on.
    """
    import lightgbm
    import numpy as np
    from sklearn.preprocessing import LabelEncoder

    booster = lightgbm.Booster(model_file=str(path))
    model: Any
    if task == "classification":
        classes = max(2, int(booster.params.get("num_class", 1) or 1))
        model = lightgbm.LGBMClassifier()
        model._n_classes = classes
        model._classes = np.arange(classes)
        model._le = LabelEncoder().fit(model._classes)
        model._class_map = None
    else:
        model = lightgbm.LGBMRegressor()
    model._Booster = booster
    model.fitted_ = True
    model._n_features = booster.num_feature()
    model._n_features_in = booster.num_feature()
    model._objective = booster.params.get("objective")
    return model


def load_folder(folder: Path, unrestricted: bool = False, task: str = "") -> Any:
    """The native model of an MLflow model folder or a package folder: a pyfunc model
    (:mod:`mlops_ci.model.pyfunc`), else the sklearn flavor's ``model.skops`` or ``model.pkl``,
    read as MLflow's loader would but with the skops allow-list of :func:`skops_trusted`. The
    folder's ``code/`` (MLflow's ``code_paths``) is put on the import path first."""
    from mlops_ci.model.pyfunc import PyfuncModel, mlmodel_flavors

    flavors = mlmodel_flavors(folder)
    if "python_function" in flavors and "sklearn" not in flavors:
        return PyfuncModel.load(folder, task)
    conf = flavors.get("sklearn") or flavors.get("python_function") or {}
    code = conf.get("code") if isinstance(conf, dict) else None
    if isinstance(code, str) and code:
        import sys

        where = (folder / code).resolve()
        if where.is_relative_to(folder.resolve()) and where.is_dir():
            sys.path.insert(0, str(where))
    skops_file = folder / "model.skops"
    if skops_file.is_file():
        import skops.io

        return skops.io.load(skops_file, trusted=skops_trusted(skops_file, unrestricted))
    pickled = folder / "model.pkl"
    if pickled.is_file():
        import joblib

        return joblib.load(pickled)
    import mlflow.sklearn

    return mlflow.sklearn.load_model(str(folder))


def load_user_model(path: Path, task: str, unrestricted: bool = False) -> Any:
    """The training command's model file, refused with one line when it cannot be scored."""
    try:
        model = load_model_file(path, task, unrestricted)
    except (TrainingError, InputError):
        raise
    except Exception as err:  # whatever the file holds, it is the user's output
        raise TrainingError(
            f"mlops.yaml: train.outputs.model: '{path.name}' cannot be loaded: "
            f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}".rstrip(": "),
            hint=f"list the local module '{err.name}' in model.code_paths (e.g. code_paths: "
            f"[{err.name}.py]), or install the library that has it"
            if isinstance(err, ModuleNotFoundError)
            else "save the fitted estimator with joblib.dump(model, path) or skops.io.dump, "
            "the framework's own file (XGBoost .json, LightGBM .txt, ONNX .onnx), or an MLflow "
            "pyfunc folder (model.flavor: pyfunc)",
        ) from None
    if not callable(getattr(model, "predict", None)):
        raise TrainingError(
            f"mlops.yaml: train.outputs.model: '{path.name}' holds a {type(model).__name__}, "
            "not a fitted estimator with predict()"
        )
    return model
