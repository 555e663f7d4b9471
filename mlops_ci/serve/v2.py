"""Open Inference Protocol v2 (KServe, Triton) bodies built from what a worker holds: the
infer response with its output tensors and datatypes, model metadata and readiness."""

from __future__ import annotations

from typing import Any

import numpy as np

from mlops_ci.model.features import BOOL, CATEGORY, STRING, Feature
from mlops_ci.serve.model import LoadedModel, Prediction
from mlops_ci.serve.payload import InferRequest, PayloadError, echoed
from mlops_ci.serve.service import Service


def infer_response(
    name: str,
    version: str,
    classes: tuple[str, ...],
    parsed: InferRequest,
    prediction: Prediction,
) -> dict[str, Any]:
    """The v2 answer: ``label`` and ``probabilities`` (FP32) of a classifier, or ``variable``
    (FP32), those asked for in the request's ``outputs`` only. Built per request, so kept to
    dicts and one ``tolist`` a tensor: it is on every v2 request's path. ``classes`` are the
    version's, taken before its prediction was awaited (it may be unloaded since)."""
    labels, scores = prediction.labels, prediction.scores
    if labels is None:
        tensors = {"variable": _fp32("variable", scores)}
    else:
        tensors = {"label": tensor("label", labels)}
        if scores.shape[1]:
            tensors["probabilities"] = _fp32("probabilities", scores)
    if parsed.outputs:
        unknown = [n for n in parsed.outputs if n not in tensors]
        if unknown:
            raise PayloadError(
                400, f"output '{unknown[0]}' does not exist (outputs: {', '.join(tensors)})"
            )
        outputs = [tensors[n] for n in parsed.outputs]
    else:
        outputs = list(tensors.values())
    data: dict[str, Any] = {
        "model_name": name,
        "model_version": version,
        "outputs": outputs,
    }
    if "probabilities" in tensors and classes:
        data["parameters"] = {"classes": list(classes)}
    if parsed.id is not None:
        data["id"] = parsed.id
    return data


def tensor(name: str, values: Any) -> dict[str, Any]:
    return {
        "name": name,
        "shape": list(values.shape),
        "datatype": datatype(values),
        "data": values.ravel().tolist(),
    }


def _fp32(name: str, values: Any) -> dict[str, Any]:
    """Scores as the FP32 tensor they are declared: rounded to float32, written as doubles."""
    return {
        "name": name,
        "shape": list(values.shape),
        "datatype": "FP32",
        "data": values.astype(np.float32).ravel().tolist(),
    }


def datatype(values: Any) -> str:
    kind = values.dtype.kind
    if kind == "f":
        return "FP32" if values.dtype.itemsize == 4 else "FP64"
    if kind in "iu":
        return "INT64"
    if kind == "b":
        return "BOOL"
    return "BYTES"


def version_of(service: Service, name: str, version: str | None) -> str | None:
    check_name(service, name)
    if version is not None and version not in service.models:
        raise PayloadError(
            404, f"version '{echoed(version)}' of '{echoed(name)}' is not served here"
        )
    return version


def model_metadata(service: Service, name: str, version: str | None) -> dict[str, Any]:
    version = version_of(service, name, version)
    model = service.models[version or next(iter(service.models))]
    outputs = [
        {
            "name": n,
            "datatype": "BYTES" if n == "label" else "FP32",
            "shape": [-1] if n == "label" else [-1, -1],
        }
        for n in model.output_names
    ]
    return {
        "name": name,
        "versions": [version] if version else list(service.models),
        "platform": "onnxruntime_onnx" if model.spec.format == "onnx" else "sklearn",
        "inputs": input_metadata(model),
        "outputs": outputs,
        "parameters": {"features": list(model.spec.features), "sha256": model.spec.sha256},
    }


def input_metadata(model: LoadedModel) -> list[dict[str, Any]]:
    """The one [rows, features] tensor, or one tensor per column where a column is text or the
    graph takes named inputs (all-numeric models also accept the one tensor then)."""
    spec = model.spec
    if spec.tensors:  # a tensor model: each input as its graph declares it
        return [
            {"name": t.name, "datatype": t.datatype, "shape": list(t.shape)} for t in spec.tensors
        ]
    if spec.schema.all_numeric and (spec.layout == "matrix" or spec.format != "onnx"):
        return [{"name": "input", "datatype": "FP32", "shape": [-1, model.n_features]}]
    return [
        {"name": f.name, "datatype": _datatype(f), "shape": [-1, 1]} for f in spec.schema.features
    ]


def _datatype(feature: Feature) -> str:
    """The v2 datatype a column's tensor takes: text (and a category of text) BYTES, a bool
    BOOL, numbers (and a category of numbers) FP32."""
    if feature.kind == BOOL:
        return "BOOL"
    if feature.kind == CATEGORY:
        numeric = feature.categories and all(
            isinstance(c, (int, float)) and not isinstance(c, bool) for c in feature.categories
        )
        return "FP32" if numeric else "BYTES"
    return "BYTES" if feature.kind == STRING else "FP32"


def server_readiness(service: Service) -> dict[str, Any]:
    """``{"ready": true}`` (the v2 body; KServe's and Triton's clients read only ``ready`` and
    the 200), and the input log's state beside it: a log that cannot write does not make a
    model that answers unready, but a health check should see it."""
    body: dict[str, Any] = {"ready": True}
    if service.input_log is not None:
        body["input_log"] = service.input_log.status()
    return body


def readiness(service: Service, name: str, version: str | None) -> dict[str, Any]:
    version_of(service, name, version)
    return {"name": name, "ready": True}


def check_name(service: Service, name: str) -> None:
    if name != service.name:
        raise PayloadError(
            404, f"model '{echoed(name)}' is not served here (serving '{service.name}')"
        )
