"""A model as MLflow logs and loads it: its flavor (sklearn, or onnx for a model of any
framework that arrived as ONNX), its signature from a few evaluation rows, and the pinned
requirements it will be served with."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mlops_ci.errors import InputError
from mlops_ci.model.onnxmodel import TASK_PROP, OnnxModel


def load_logged_model(uri: str) -> Any:
    """A model logged by `train`, by its MLflow flavor (a local folder or any model URI)."""
    import mlflow.models

    local = Path(uri)
    flavors = (
        mlflow.models.Model.load(str(local / "MLmodel")).flavors
        if (local / "MLmodel").is_file()
        else mlflow.models.get_model_info(uri).flavors
    )
    if "onnx" in flavors:
        import mlflow.onnx

        proto = mlflow.onnx.load_model(uri)
        return OnnxModel(proto.SerializeToString(), where=f"the ONNX model at {uri}")
    import mlflow.sklearn

    return mlflow.sklearn.load_model(uri)


def log_model(model: Any, signature: Any) -> str:
    """Log the model under the active run with its flavor; returns its model URI."""
    if isinstance(model, OnnxModel):
        import mlflow.onnx
        import onnx

        proto = onnx.load_from_string(model.data)
        onnx.helper.set_model_props(
            proto, {**{p.key: p.value for p in proto.metadata_props}, TASK_PROP: model.task}
        )
        info = mlflow.onnx.log_model(
            proto, name="model", signature=signature, save_as_external_data=False
        )
        return str(info.model_uri)
    import mlflow.sklearn

    info = mlflow.sklearn.log_model(
        model,
        name="model",
        signature=signature,
        pip_requirements=_serving_requirements(model),
        skops_trusted_types=_skops_types(model),
    )
    return str(info.model_uri)


def model_signature(model: Any, example: Any) -> Any:
    """MLflow model signature from a few evaluation rows; None when there are none."""
    if example is None:
        return None
    from mlflow.models import infer_signature

    from mlops_ci.model.features import model_frame

    example = model_frame(model, example, "evaluate.data", "the trained")
    try:
        return infer_signature(example, model.predict(example))
    except Exception as err:  # the user's model on the user's data
        raise InputError(
            f"evaluate.data: the trained model cannot score its rows: {str(err).splitlines()[0]}",
            hint="check evaluate.features and evaluate.target match what train.py uses",
        ) from None


def _skops_types(model: Any) -> list[str]:
    """Types in the user's own freshly trained model that skops must be told to trust."""
    import skops.io

    return list(skops.io.get_untrusted_types(data=skops.io.dumps(model)))


def _serving_requirements(model: Any) -> list[str]:
    """Pinned requirements of the logged model; passing them skips MLflow's slow inference."""
    from importlib import metadata

    from mlops_ci.packaging.frameworks import distributions

    pins = []
    for dist in ("scikit-learn", "numpy", "scipy", "pandas", "skops", *distributions(model)):
        try:
            pins.append(f"{dist}=={metadata.version(dist)}")
        except metadata.PackageNotFoundError:
            continue
    return pins
