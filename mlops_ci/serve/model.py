"""A served model version: files checked against their manifest, then loaded once per process.

``package`` writes ``manifest.json`` beside the model files (and logs both to the run); serving
refuses to load a folder whose files no longer match it. ONNX models run on onnxruntime, in
this process (a graph is data, not code). A native scikit-learn model (``package.onnx: false``)
is code a training command wrote: it is loaded and called only in a model runner's child
(``mlops_ci.runner``, the sandbox of ``--isolation``), never here, where the admin token is.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from mlops_ci.errors import InputError
from mlops_ci.model.features import STRING, Feature, FeatureSchema, native_frame
from mlops_ci.model.integrity import MANIFEST, digest, verify
from mlops_ci.model.onnxmodel import from_onnxruntime
from mlops_ci.model.providers import CPU, Ran
from mlops_ci.model.tensors import TensorInput, TensorSchema
from mlops_ci.packaging import convert, sessions
from mlops_ci.records import read_json
from mlops_ci.runner.client import (
    ModelFailed,
    ModelRunner,
    RemoteModel,
    RunnerError,
    ValuesRefused,
)
from mlops_ci.serve.payload import PayloadError, batch_rows

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
    kinds: tuple[str, ...] = ()  # number | string per feature; empty: all numbers
    layout: str = convert.MATRIX  # ONNX inputs: one float tensor or one per column
    classes: tuple[str, ...] = ()  # labels in the order of the probabilities
    providers: tuple[str, ...] = (CPU,)  # ONNX execution providers package.providers named
    nullable: tuple[str, ...] = ()  # columns that may be missing (features.py)
    # a category column's categories, in the model's order, per feature (() for the others)
    categories: tuple[tuple[Any, ...], ...] = ()
    tensors: tuple[TensorInput, ...] = ()  # layout tensors: the graph's inputs (issue 43)

    @property
    def tensor_schema(self) -> TensorSchema | None:
        return TensorSchema(self.tensors) if self.tensors else None

    @property
    def schema(self) -> FeatureSchema:
        kinds = self.kinds or ("number",) * len(self.features)
        categories = self.categories or ((),) * len(self.features)
        return FeatureSchema(
            tuple(
                Feature(n, k, n in self.nullable, c)
                for n, k, c in zip(self.features, kinds, categories, strict=True)
            )
        )


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
    features = record.get("features", [])
    if not isinstance(features, list) or not all(isinstance(f, str) for f in features):
        raise InputError(f"{folder / MANIFEST}: 'features' must be a list of column names")
    schema = FeatureSchema.numeric(tuple(features))
    if "schema" in record:
        schema = FeatureSchema.from_list(record["schema"], str(folder / MANIFEST))
        if schema.names != tuple(features):
            raise InputError(f"{folder / MANIFEST}: 'schema' and 'features' name other columns")
    layout = record.get("layout", convert.MATRIX)
    if layout not in (convert.MATRIX, convert.COLUMNS, convert.TENSORS):
        raise InputError(
            f"{folder / MANIFEST}: layout '{layout}' is not matrix, columns or tensors"
        )
    tensors = None
    if layout == convert.TENSORS:
        tensors = TensorSchema.from_list(record.get("tensors"), str(folder / MANIFEST))
        if tensors.names != tuple(features):
            raise InputError(f"{folder / MANIFEST}: 'tensors' and 'features' name other inputs")
    return ModelSpec(
        name=str(record.get("name", "model")),
        version=str(record.get("version", "1")),
        format=fmt,
        folder=folder,
        features=schema.names,
        sha256=digest(files),
        kinds=tuple(f.kind for f in schema.features),
        layout=layout,
        classes=tuple(str(c) for c in record.get("classes") or ()),
        providers=_providers(record.get("providers"), folder / MANIFEST),
        nullable=schema.nullable,
        categories=tuple(f.categories for f in schema.features),
        tensors=tensors.inputs if tensors is not None else (),
    )


def _providers(raw: Any, where: Path) -> tuple[str, ...]:
    """The manifest's execution providers, best first (a package made before issue 43 names
    none: CPU)."""
    if raw is None:
        return (CPU,)
    if not isinstance(raw, list) or not raw or not all(isinstance(p, str) for p in raw):
        raise InputError(f"{where}: 'providers' must be a list of execution provider names")
    return tuple(raw)


def _one_output(session: Any, spec: ModelSpec) -> None:
    """A graph whose values hold several outputs per row (a package of a multi-output
    regressor, made before package refused them) is refused at its load: batch-score would
    keep the first alone, and nothing evaluated the others."""
    from mlops_ci.evaluation.predictions import several_outputs

    for output in session.get_outputs():
        shape = output.shape
        wide = len(shape) == 2 and isinstance(shape[1], int) and shape[1] > 1
        if output.name == "variable" and wide:
            raise several_outputs(f"{spec.folder / ONNX_FILE}: the model", shape[1])


class LoadedModel:
    """One version in memory: ``predict`` takes a float64 matrix [rows, features] (all-numeric
    schemas) or a table of 1-D columns by name (numbers, object strings).

    A native model lives in a model runner's child: the runner given (shared, the caller
    closes it) or one of its own, started here with ``isolation`` and stopped by ``close``."""

    def __init__(
        self,
        spec: ModelSpec,
        intra_op_threads: int = 1,
        isolation: str = "auto",
        runner: ModelRunner | None = None,
        providers: tuple[str, ...] | None = None,
    ) -> None:
        self.spec = spec
        self.ran: Ran | None = None  # ONNX: the execution provider the session runs on
        self.schema = spec.schema  # built once: predict runs per request
        self._session: Any = None
        self._remote: RemoteModel | None = None
        self._runner: ModelRunner | None = None
        self._own_runner = False
        self._lock = threading.Lock()  # the reload after a runner stopped
        self._closed = False
        # A one-row request scored as two copies of its row: onnxruntime answers one row by
        # another kernel for some ops (serve.batching's ``calibrate`` finds out and sets it).
        self.pair_single_rows = False
        if spec.format == "onnx":
            self._session, self.ran = sessions.open_onnx(
                str(spec.folder / ONNX_FILE), intra_op_threads, "all", providers or spec.providers
            )
            inputs = self._session.get_inputs()
            if spec.layout == convert.TENSORS:
                self.n_features = len(inputs)
                graph = TensorSchema.of_graph(inputs, str(spec.folder / ONNX_FILE))
                if graph != spec.tensor_schema:
                    raise InputError(
                        f"{spec.folder / ONNX_FILE}: takes {graph.describe()}; its manifest "
                        f"says {spec.tensor_schema.describe() if spec.tensor_schema else 'none'}"
                    )
            elif spec.layout == convert.MATRIX:
                shape = inputs[0].shape
                self.n_features = int(shape[1]) if isinstance(shape[1], int) else len(spec.features)
            else:
                self.n_features = len(inputs)
                missing = set(spec.features) - {i.name for i in inputs}
                if missing:
                    raise InputError(
                        f"{spec.folder / ONNX_FILE}: has no input for column(s) "
                        f"{', '.join(sorted(missing))} of its manifest"
                    )
            self.output_names = [o.name for o in self._session.get_outputs()]
            _one_output(self._session, spec)
        else:
            self._own_runner = runner is None
            self._runner = runner or ModelRunner(isolation)
            try:
                remote = self._remote = self._runner.load_folder(spec.folder)
            except BaseException:
                self.close()
                raise
            self.n_features = len(spec.features) or int(getattr(remote, "n_features_in_", 0))
            self.output_names = (
                ["label", "probabilities"] if convert.is_classifier(remote) else ["variable"]
            )
            self._warm(remote)
        if spec.features and len(spec.features) != self.n_features:
            self.close()
            raise InputError(
                f"{spec.folder / MANIFEST}: lists {len(spec.features)} features, "
                f"the model takes {self.n_features}"
            )

    @property
    def is_classifier(self) -> bool:
        return "probabilities" in self.output_names

    @property
    def in_runner(self) -> bool:
        """Scored in a model runner's child: each call waits on a pipe (off the event loop)."""
        return self._runner is not None

    def close(self) -> None:
        """Stop the model runner this version started (a shared one stays for its owner)."""
        self._closed = True
        self._remote = None
        if self._runner is not None and self._own_runner:
            self._runner.close()

    def _warm(self, remote: RemoteModel) -> None:
        """Score no rows once, so the imports of both sides are behind the first request
        (about 0.5 s on it otherwise); most models refuse an empty table, which is fine."""
        if not self.spec.features:
            return
        empty = {
            f.name: np.empty(0, dtype=object if f.kind == STRING else np.float64)
            for f in self.schema.features
        }
        try:
            convert.native_outputs(remote, native_frame(self.schema, empty))
        except (ValuesRefused, ModelFailed):
            pass
        except BaseException:
            self.close()
            raise

    def _native(self) -> RemoteModel:
        """The model in the runner; loaded again when the runner stopped under an earlier
        request (that request failed; the next ones are served)."""
        with self._lock:
            if self._closed:
                raise self._unloaded()
            if self._remote is None:
                assert self._runner is not None
                self._remote = self._runner.load_folder(self.spec.folder)
            return self._remote

    def predict(self, x: npt.NDArray[Any] | dict[str, Any]) -> Prediction:
        """Score a batch as the payload parsers give it: a matrix in schema order (float32
        for ONNX, float64 for the native model) or 1-D columns by name, missing values as
        the contract of ``model/features.py`` says."""
        spec = self.spec
        if self._session is not None and spec.layout == convert.TENSORS:
            # arrays a request parser checked against the contract (serve/tensorbody.py)
            assert isinstance(x, dict)
            try:
                out = convert.onnx_outputs(self._session, x, self.output_names)
            except Exception as err:  # values the graph refuses: a token id past its vocabulary
                if not from_onnxruntime(err):
                    raise
                reason = convert.runtime_reason(err)
                raise PayloadError(422, f"the model cannot score these values: {reason}") from None
        elif self._session is not None:
            paired = self.pair_single_rows and batch_rows(x) == 1
            if isinstance(x, dict) and spec.layout == convert.MATRIX:
                x = np.stack([np.asarray(x[n], np.float32) for n in spec.features], axis=1)
            if isinstance(x, dict):
                feeds = convert.table_feeds(
                    self.schema, {k: np.concatenate([v, v]) for k, v in x.items()} if paired else x
                )
            else:
                matrix = np.asarray(x, np.float32)
                if paired:
                    matrix = np.concatenate([matrix, matrix])
                feeds = convert.matrix_feeds(spec.layout, self.schema, matrix)
            out = convert.onnx_outputs(self._session, feeds, self.output_names)
            if paired:
                labels = out.labels[:1] if out.labels is not None else None
                return Prediction(labels, out.scores[:1])
        else:
            frame: Any = x
            if isinstance(x, dict) or spec.features:
                frame = native_frame(self.schema, x)
            remote = self._native()
            try:
                out = convert.native_outputs(remote, frame)
            except ValuesRefused as err:
                # The pipeline refused values the schema allows (a scaler overflowing float32,
                # a category it never saw): the request's values, answered as MLflow's scoring
                # server does, with a 4xx naming the model's reason.
                reason = str(err).strip().splitlines()[0][:300] if str(err).strip() else "?"
                raise PayloadError(422, f"the model cannot score these values: {reason}") from None
            except RunnerError:
                with self._lock:
                    if self._closed:  # unloaded while this call ran: its runner was stopped
                        raise self._unloaded() from None
                    if self._remote is remote:
                        self._remote = None  # its child is gone: the next request reloads
                raise
        return Prediction(out.labels, out.scores)

    def _unloaded(self) -> PayloadError:
        """A request routed to this version before it was unloaded (a split changed, the admin
        endpoint dropped it) that its stopped runner cannot answer: 503, sent again it goes to
        a version still served."""
        return PayloadError(
            503,
            f"version '{self.spec.version}' was unloaded while this request waited; send it again",
        )
