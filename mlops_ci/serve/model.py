"""A served model version: files checked against their manifest, then loaded once per process.

``package`` writes ``manifest.json`` beside the model files (and logs both to the run); serving
refuses to load a folder whose files no longer match it. ONNX models run on onnxruntime, a
native scikit-learn model (``package.onnx: false``) through MLflow's sklearn loader.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from mlops_ci.errors import InputError
from mlops_ci.integrity import MANIFEST, digest, verify
from mlops_ci.packaging import convert
from mlops_ci.records import read_json

ONNX_FILE = "model.onnx"


@dataclass(frozen=True)
class ModelSpec:
    """Where one version's verified files are, as read from its manifest."""

    name: str
    version: str
    format: str  # onnx | sklearn
    folder: Path
    features: tuple[str, ...]
    sha256: str


@dataclass(frozen=True)
class Prediction:
    labels: npt.NDArray[Any] | None  # classifiers
    scores: npt.NDArray[np.float64]  # probabilities (classifiers) or values, [rows, k]


def model_folder(path: Path) -> Path:
    """The folder holding manifest.json: the path itself, or ``model/`` of a build context."""
    for candidate in (path, path / "model"):
        if (candidate / MANIFEST).is_file():
            return candidate
    raise InputError(
        f"{path}: no {MANIFEST} here or in {path / 'model'}",
        hint="point --model-dir at a folder written by `mlops-ci package`",
    )


def read_spec(path: Path) -> ModelSpec:
    """Verify the folder's files against its manifest and return what it declares."""
    folder = model_folder(path)
    record = read_json(folder / MANIFEST)
    if not isinstance(record, dict) or not isinstance(record.get("files"), dict):
        raise InputError(f"{folder / MANIFEST}: not an mlops-ci package manifest (no 'files')")
    files: dict[str, str] = record["files"]
    verify(folder, files, f"{folder}")
    if record.get("sha256") and digest(files) != record["sha256"]:
        raise InputError(f"{folder / MANIFEST}: 'sha256' does not match its own file list")
    fmt = str(record.get("format", "onnx"))
    if fmt not in ("onnx", "sklearn"):
        raise InputError(f"{folder / MANIFEST}: format '{fmt}' cannot be served")
    return ModelSpec(
        name=str(record.get("name", "model")),
        version=str(record.get("version", "1")),
        format=fmt,
        folder=folder,
        features=tuple(str(f) for f in record.get("features", [])),
        sha256=digest(files),
    )


class LoadedModel:
    """One version in memory: ``predict`` takes a float32 matrix [rows, features]."""

    def __init__(self, spec: ModelSpec, intra_op_threads: int = 1) -> None:
        self.spec = spec
        self._session: Any = None
        self._native: Any = None
        if spec.format == "onnx":
            self._session = convert.session(str(spec.folder / ONNX_FILE), intra_op_threads, "all")
            shape = self._session.get_inputs()[0].shape
            self.n_features = int(shape[1]) if isinstance(shape[1], int) else len(spec.features)
            self.output_names = [o.name for o in self._session.get_outputs()]
        else:
            import mlflow.sklearn

            self._native = mlflow.sklearn.load_model(str(spec.folder))
            self.n_features = int(getattr(self._native, "n_features_in_", len(spec.features)))
            self.output_names = (
                ["label", "probabilities"] if convert.is_classifier(self._native) else ["variable"]
            )
        if spec.features and len(spec.features) != self.n_features:
            raise InputError(
                f"{spec.folder / MANIFEST}: lists {len(spec.features)} features, "
                f"the model takes {self.n_features}"
            )

    @property
    def is_classifier(self) -> bool:
        return "probabilities" in self.output_names

    def predict(self, x: npt.NDArray[np.float32]) -> Prediction:
        if self._session is not None:
            out = convert.onnx_outputs(self._session, x)
        else:
            frame: Any = x
            if self.spec.features:
                import pandas as pd

                frame = pd.DataFrame(x, columns=list(self.spec.features))
            out = convert.native_outputs(self._native, frame)
        return Prediction(out.labels, out.scores)
