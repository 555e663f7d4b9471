"""An MLflow pyfunc model (``model.flavor: pyfunc``) with the face of a fitted scikit-learn
model, so every verb scores it as it scores any other: ``predict`` gives labels or values,
``predict_proba`` a classifier's class probabilities.

What its ``predict`` returns decides which: a DataFrame with one column per class is a
classifier's probabilities (the column names are the labels, the predicted label the column
with the highest probability); a single column, a Series or a 1-D array is the labels (a
classifier) or the values (a regressor). Which one a model is gets learnt once, from a few rows
(the evaluation rows at train, the folder's saved input example), and is written into the
logged MLmodel's ``metadata`` (:data:`META`), so later loads need no rows.

Only the model runner's child uses this module (a pyfunc model is the user's code).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

META = "mlops_ci"  # MLmodel metadata key: {"task": ..., "classes": [...] | None}


class PyfuncModel:
    """A loaded pyfunc model; ``classes_`` and ``predict_proba`` once its answers say it has
    class probabilities."""

    def __init__(self, loaded: Any, folder: Path, task: str) -> None:
        self._model = loaded
        self.folder = folder
        said = dict((loaded.metadata.metadata or {}).get(META) or {})
        self.task = str(said.get("task") or task or "")
        classes = said.get("classes")
        self._classes: list[Any] | None = list(classes) if isinstance(classes, list) else None
        self.model_kind = self.task
        self.model_is_classifier = self.task == "classification"
        schema = loaded.metadata.get_input_schema()
        self._schema = schema
        if schema is not None and schema.has_input_names():
            import numpy as np

            self.feature_names_in_ = np.asarray(schema.input_names(), dtype=object)
            self.n_features_in_ = len(schema.input_names())

    @staticmethod
    def load(folder: Path, task: str) -> PyfuncModel:
        import mlflow.pyfunc

        return PyfuncModel(mlflow.pyfunc.load_model(str(folder)), folder, task)

    def probe(self, rows: Any) -> None:
        """Learn from the answer to ``rows`` whether the model gives class probabilities."""
        if rows is None or self._classes is not None or not self.model_is_classifier:
            return
        self._raw(rows)

    def example(self) -> Any:
        """The input example saved with the folder, if any."""
        try:
            return self._model.input_example
        except Exception:  # no example, or one MLflow cannot read back
            return None

    @property
    def classes_(self) -> Any:
        import numpy as np

        if self._classes is None:
            raise AttributeError("classes_")
        return np.asarray(self._classes)

    def __getattr__(self, name: str) -> Any:
        if name == "predict_proba" and self.__dict__.get("_classes") is not None:
            return self._predict_proba
        raise AttributeError(name)

    def metadata(self) -> dict[str, Any]:
        """What :data:`META` records of the model in its logged MLmodel."""
        return {"task": self.task, "classes": self._classes}

    def _frame(self, x: Any) -> Any:
        """The rows as the DataFrame a pyfunc model takes; integer columns of its signature
        get integers where the values are whole (a CSV and a JSON body give floats)."""
        import numpy as np
        import pandas as pd

        frame = x if isinstance(x, pd.DataFrame) else pd.DataFrame(x)
        if self._schema is None or not self._schema.has_input_names():
            return frame
        if not isinstance(x, pd.DataFrame) and list(frame.columns) == list(range(frame.shape[1])):
            frame.columns = self._schema.input_names()[: frame.shape[1]]
        for spec in self._schema.inputs:
            name, kind = spec.name, str(getattr(spec.type, "name", spec.type))
            if name in frame.columns and kind in ("long", "integer"):
                values = frame[name]
                whole = values.dtype.kind == "f" and bool(np.all(np.isfinite(values)))
                if whole and bool(np.all(values == np.round(values))):
                    frame[name] = values.astype("int64" if kind == "long" else "int32")
        return frame

    def _raw(self, x: Any) -> Any:
        """The model's own answer; a refusal of the values by MLflow's schema check is a
        ValueError (the caller's values, a 4xx), anything else the model's own failure."""
        import pandas as pd
        from mlflow.exceptions import MlflowException

        try:
            out = self._model.predict(self._frame(x))
        except MlflowException as err:
            raise ValueError(str(err).splitlines()[0] if str(err) else "refused") from None
        if (
            self.model_is_classifier
            and isinstance(out, pd.DataFrame)
            and out.shape[1] > 1
            and all(kind in "biuf" for kind in out.dtypes.map(lambda d: d.kind))
        ):
            columns = [c.item() if hasattr(c, "item") else c for c in out.columns]
            if self._classes is None:
                self._classes = columns
            elif [str(c) for c in columns] != [str(c) for c in self._classes]:
                raise ValueError(
                    f"the model answered with columns {columns[:10]}, not its classes "
                    f"{self._classes[:10]}"
                )
        return out

    def predict(self, x: Any) -> Any:
        import numpy as np
        import pandas as pd

        out = self._raw(x)
        if isinstance(out, pd.DataFrame):
            if out.shape[1] == 1:
                return out.iloc[:, 0].to_numpy()
            if self._classes is not None:
                return np.asarray(self._classes, dtype=object)[
                    np.argmax(out.to_numpy(np.float64), axis=1)
                ].astype(np.asarray(self._classes).dtype)
            return out.to_numpy()
        if isinstance(out, pd.Series):
            return out.to_numpy()
        return np.asarray(out)

    def _predict_proba(self, x: Any) -> Any:
        import numpy as np

        out = self._raw(x)
        return np.ascontiguousarray(np.asarray(out, dtype=np.float64))


def save_copy(model: PyfuncModel, dest: Path, signature: Any) -> None:
    """The pyfunc folder copied to ``dest`` as it was written, its MLmodel given
    :data:`META` (and ``signature`` when it has none of its own)."""
    import shutil

    import mlflow.models

    shutil.copytree(model.folder, dest, symlinks=False)
    mlmodel = mlflow.models.Model.load(str(dest / "MLmodel"))
    if mlmodel.signature is None and signature is not None:
        mlmodel.signature = signature
    mlmodel.metadata = {**(mlmodel.metadata or {}), META: model.metadata()}
    mlmodel.save(str(dest / "MLmodel"))


def is_pyfunc_folder(folder: Path) -> bool:
    """An MLflow model folder whose flavors do not include sklearn: served through pyfunc."""
    flavors = mlmodel_flavors(folder)
    return "python_function" in flavors and "sklearn" not in flavors


def mlmodel_flavors(folder: Path) -> dict[str, Any]:
    """The flavors of the folder's MLmodel (YAML data; no code runs), {} when there is none."""
    import yaml

    path = folder / "MLmodel"
    if not path.is_file():
        return {}
    try:
        data = yaml.safe_load(path.read_text("utf-8"))
    except (OSError, ValueError, yaml.YAMLError):
        return {}
    flavors = data.get("flavors") if isinstance(data, dict) else None
    return flavors if isinstance(flavors, dict) else {}
