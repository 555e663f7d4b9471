"""A model as MLflow logs and loads it: its flavor (sklearn, or onnx for a model of any
framework that arrived as ONNX), its signature from a few evaluation rows, and the pinned
requirements it will be served with.

A native model is never loaded here: the model runner's child loads it
(:mod:`mlops_ci.runner`), and saves MLflow's sklearn flavor of it into a folder this process
then logs as it is (:class:`_Prebuilt`)."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

from mlops_ci.errors import InputError
from mlops_ci.model.files import ONNX_SUFFIX, load_user_model
from mlops_ci.model.onnxmodel import TASK_PROP, OnnxModel
from mlops_ci.registry import NewRun
from mlops_ci.runner import ModelRunner, RemoteModel


def load_logged_model(folder: Path, runner: ModelRunner) -> OnnxModel | RemoteModel:
    """A model logged by `train`, downloaded to ``folder``, by its MLflow flavor: ONNX read
    here (data), the native model loaded in the runner's child."""
    import mlflow.models

    flavors = mlflow.models.Model.load(str(folder / "MLmodel")).flavors
    if "onnx" in flavors:
        # The file as logged (``save_as_external_data=False``: one file). Not
        # mlflow.onnx.load_model: its onnx.checker refuses graphs onnxruntime runs, such as an
        # output declared without a shape (a tensor model's "probs" as exporters write it).
        graph = folder / str(flavors["onnx"].get("data", "model.onnx"))
        where = f"the ONNX model at {folder}"
        if not graph.resolve().is_relative_to(folder.resolve()) or not graph.is_file():
            raise InputError(f"{where}: its MLmodel names no model file inside the folder")
        return OnnxModel(graph.read_bytes(), where=where)
    return runner.load_folder(folder)


def load_run_model(runner: ModelRunner, run: NewRun) -> OnnxModel | RemoteModel:
    """The training command's model: an ONNX graph read here (data, not code), any other
    file or folder loaded in the runner's child with its ``model.code_paths`` (and a few
    evaluation rows, which show a pyfunc model's answers)."""
    path = run.model_file
    if path.suffix.lower() == ONNX_SUFFIX and path.is_file():
        return load_user_model(path, run.task)  # type: ignore[no-any-return]
    return runner.load(path, run.task, run.code_paths, run.example_features)


class _Prebuilt:
    """An MLflow flavor module whose ``save_model`` copies the folder the runner's child saved
    (MLmodel, model.skops, requirements; written here from the bytes it sent, so regular
    files of this process's own), keeping the MLmodel this run's logging made."""

    __name__ = "mlflow.sklearn"

    @staticmethod
    def save_model(path: str, mlflow_model: Any, prebuilt: Path) -> None:
        import mlflow.models

        shutil.copytree(prebuilt, path, symlinks=True, dirs_exist_ok=True)
        saved = mlflow.models.Model.load(str(Path(path) / "MLmodel"))
        mlflow_model.flavors = saved.flavors
        mlflow_model.signature = saved.signature
        mlflow_model.metadata = saved.metadata  # a pyfunc model's answers (model.pyfunc.META)
        mlflow_model.saved_input_example_info = saved.saved_input_example_info
        mlflow_model.save(str(Path(path) / "MLmodel"))


def log_model(model: OnnxModel | RemoteModel, signature: Any, run_id: str, model_id: str) -> str:
    """Log the model with its flavor as the logged model ``model_id`` (made beforehand in the
    run's experiment) of run ``run_id``, no active run involved; returns its model URI."""
    if isinstance(model, OnnxModel):
        import mlflow.onnx
        import onnx

        proto = onnx.load_from_string(model.data)
        onnx.helper.set_model_props(
            proto, {**{p.key: p.value for p in proto.metadata_props}, TASK_PROP: model.task}
        )
        info = mlflow.onnx.log_model(
            proto,
            name="model",
            signature=signature,
            save_as_external_data=False,
            run_id=run_id,
            model_id=model_id,
        )
        return str(info.model_uri)
    import mlflow.models

    with tempfile.TemporaryDirectory(prefix="mlops-mlflow-") as tmp:
        dest = Path(tmp) / "model"
        model.save_mlflow(dest, signature, _serving_requirements(model))
        info = mlflow.models.Model.log(
            artifact_path=None,
            name="model",
            flavor=_Prebuilt,
            prebuilt=dest,
            run_id=run_id,
            model_id=model_id,
        )
    return str(info.model_uri)


def model_signature(model: Any, example: Any) -> Any:
    """MLflow model signature from a few evaluation rows; None when there are none."""
    if example is None:
        return None
    from mlflow.models import infer_signature

    from mlops_ci.model.features import model_frame

    example = model_frame(model, example, "evaluate.data", "the trained")
    tensors = getattr(model, "tensors", None)
    try:
        if tensors is not None:  # a tensor model: a TensorSpec per input, by name
            inputs = example.for_model(tensors)
            return infer_signature(inputs, model.predict(inputs))
        return infer_signature(example, model.predict(example))
    except Exception as err:  # the user's model on the user's data
        raise InputError(
            f"evaluate.data: the trained model cannot score its rows: {str(err).splitlines()[0]}",
            hint="check evaluate.features and evaluate.target match what train.py uses",
        ) from None


def _serving_requirements(model: RemoteModel) -> list[str]:
    """Pinned requirements of the logged model; passing them skips MLflow's slow inference."""
    from importlib import metadata

    pins = []
    for dist in ("scikit-learn", "numpy", "scipy", "pandas", "skops", *model.distributions):
        try:
            pins.append(f"{dist}=={metadata.version(dist)}")
        except metadata.PackageNotFoundError:
            continue
    return pins
