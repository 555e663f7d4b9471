"""The service's OpenAPI document, built from the models it serves right now.

The handlers parse raw bodies (``payload``), so FastAPI cannot infer what they accept; this
module states it instead: per-model request bodies (the columns, their kinds, the float32 range,
the row limit), every status a route answers with its ``{"error": ...}`` body, the path and
header parameters, and the admin API behind its bearer token. It is rebuilt on each read, so a
version loaded by a rollout appears in the ``x-model-version`` and ``{version}`` choices.

One rule of the Open Inference Protocol is beyond JSON Schema and is stated in words only: a
tensor's ``shape`` must multiply out to the number of values in its ``data``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from mlops_ci import __version__
from mlops_ci.serve.openapibodies import infer_body_schema, score_body_schema
from mlops_ci.serve.payload import Limits

JSON = "application/json"
ERROR = {"$ref": "#/components/schemas/Error"}
WHY = {
    400: "The body is not JSON, or not the shape this route takes.",
    401: "The Authorization header is missing or holds another token.",
    403: "The admin endpoints are off: serve was started without an admin token.",
    404: "No such model or version is served here.",
    409: "The version is loaded with other files, or still takes traffic.",
    413: "The body or its row count is over the service's limit.",
    415: "The Content-Type is neither JSON nor the binary tensor extension.",
    422: "The values do not fit the model: a column, a kind, a shape or a number is wrong.",
    503: "monitor.durable is on and the input log cannot be written: nothing was scored.",
}


def openapi_document(
    name: str, limits_by_version: Mapping[str, Limits], output_names: Iterable[str]
) -> dict[str, Any]:
    """The OpenAPI 3.1 document of the model ``name`` served in the versions of
    ``limits_by_version`` (each with its own columns and limits), answering ``output_names``."""
    versions = sorted(limits_by_version)
    limits = [limits_by_version[v] for v in versions]
    outputs = sorted(set(output_names))
    model = {"name": "name", "in": "path", "required": True, "schema": {"enum": [name]}}
    version = {"name": "version", "in": "path", "required": True, "schema": {"enum": versions}}
    pin = {
        "name": "x-model-version",
        "in": "header",
        "required": False,
        "description": "Pin the request to one loaded version instead of the traffic split.",
        "schema": {"type": "string", "enum": versions},
    }
    infer_body = _one_of([infer_body_schema(lim, outputs) for lim in limits])
    score_body = _one_of([score_body_schema(lim) for lim in limits])
    paths: dict[str, Any] = {
        "/score": {
            "post": _op(
                "Score rows",
                "Rows as lists in feature order or records by column name; MLflow's "
                "dataframe_split / dataframe_records and Azure ML's data / input_data too.",
                [pin],
                score_body,
                "#/components/schemas/ScoreResponse",
                (400, 404, 413, 415, 422, 503),
            )
        },
        "/v2/models/{name}/infer": {
            "post": _op(
                "Infer (Open Inference Protocol v2)",
                "One [rows, features] tensor, or one tensor per column named like it. A "
                "tensor's shape must multiply out to the number of values in its data. The "
                "binary tensor extension is accepted as application/octet-stream with an "
                "Inference-Header-Content-Length header.",
                [model, pin],
                infer_body,
                "#/components/schemas/InferResponse",
                (400, 404, 413, 415, 422, 503),
            )
        },
        "/v2/models/{name}/versions/{version}/infer": {
            "post": _op(
                "Infer on one version",
                "As /v2/models/{name}/infer, pinned to {version}.",
                [model, version],
                infer_body,
                "#/components/schemas/InferResponse",
                (400, 404, 413, 415, 422, 503),
            )
        },
        "/v2": {"get": _get("Server metadata", [], "ServerMetadata", ())},
        "/v2/health/live": {"get": _get("Liveness", [], "Live", ())},
        "/v2/health/ready": {"get": _get("Readiness", [], "Ready", ())},
        "/v2/models/{name}": {"get": _get("Model metadata", [model], "ModelMetadata", (404,))},
        "/v2/models/{name}/versions/{version}": {
            "get": _get("Model version metadata", [model, version], "ModelMetadata", (404,))
        },
        "/v2/models/{name}/ready": {"get": _get("Model readiness", [model], "Ready", (404,))},
        "/v2/models/{name}/versions/{version}/ready": {
            "get": _get("Model version readiness", [model, version], "Ready", (404,))
        },
        "/metrics": {
            "get": {
                "summary": "Prometheus metrics",
                "responses": {
                    "200": {
                        "description": "Counters and histograms per version and endpoint.",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    }
                },
            }
        },
        **_admin_paths(versions),
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": f"mlops-ci: {name}", "version": __version__},
        "paths": paths,
        "components": {"schemas": _components(), "securitySchemes": _security()},
    }


def _op(
    summary: str,
    description: str,
    parameters: list[dict[str, Any]],
    body: dict[str, Any] | None,
    answer: str,
    errors: tuple[int, ...],
) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "summary": summary,
        "description": description,
        "parameters": parameters,
        "responses": {
            "200": {
                "description": "Scored.",
                "headers": _answer_headers(),
                "content": {JSON: {"schema": {"$ref": answer}}},
            },
            **_errors(errors),
        },
    }
    if body is not None:
        operation["requestBody"] = {"required": True, "content": {JSON: {"schema": body}}}
    return operation


def _get(
    summary: str, parameters: list[dict[str, Any]], answer: str, errors: tuple[int, ...]
) -> dict[str, Any]:
    return {
        "summary": summary,
        "parameters": parameters,
        "responses": {
            "200": {
                "description": "OK",
                "content": {JSON: {"schema": {"$ref": f"#/components/schemas/{answer}"}}},
            },
            **_errors(errors),
        },
    }


def _errors(statuses: tuple[int, ...]) -> dict[str, Any]:
    return {str(s): {"description": WHY[s], "content": {JSON: {"schema": ERROR}}} for s in statuses}


def _answer_headers() -> dict[str, Any]:
    return {
        "x-model-version": {
            "description": "The version that answered.",
            "schema": {"type": "string"},
        },
        "x-request-id": {
            "description": "The request's x-request-id, or one made for it.",
            "schema": {"type": "string"},
        },
    }


def _one_of(bodies: list[dict[str, Any]]) -> dict[str, Any]:
    """One body schema, or the choice between distinct ones when loaded versions differ."""
    distinct = [b for i, b in enumerate(bodies) if b not in bodies[:i]]
    return distinct[0] if len(distinct) == 1 else {"anyOf": distinct}


# --- /score --------------------------------------------------------------------------------


# --- /v2 infer ------------------------------------------------------------------------------


# --- admin ----------------------------------------------------------------------------------


def _admin_paths(versions: list[str]) -> dict[str, Any]:
    auth: list[dict[str, list[str]]] = [{"bearer": []}]
    answer = {"$ref": "#/components/schemas/Traffic"}

    def admin(summary: str, body: dict[str, Any] | None, errors: tuple[int, ...]) -> Any:
        op: dict[str, Any] = {
            "summary": summary,
            "tags": ["admin"],
            "security": auth,
            "responses": {
                "200": {"description": "The split now.", "content": {JSON: {"schema": answer}}},
                **_errors((401, 403, *errors)),
            },
        }
        if body is not None:
            op["requestBody"] = {"required": True, "content": {JSON: {"schema": body}}}
        return op

    weights = {
        "type": "object",
        "properties": {
            "weights": {
                "type": "object",
                "description": "Version: weight; at least one above 0.",
                "propertyNames": {"enum": versions},
                "additionalProperties": {"type": "number", "minimum": 0},
                "minProperties": 1,
            }
        },
        "required": ["weights"],
    }
    folder = {
        "type": "object",
        "properties": {"path": {"type": "string", "minLength": 1, "maxLength": 4096}},
        "required": ["path"],
    }
    unload = admin("Unload a version taking no traffic", None, (404, 409))
    unload["parameters"] = [
        {"name": "version", "in": "path", "required": True, "schema": {"type": "string"}}
    ]
    return {
        "/admin/traffic": {
            "get": admin("The traffic split", None, ()),
            "put": admin("Set the traffic split", weights, (400, 413, 422)),
        },
        "/admin/models": {"post": admin("Load a package folder", folder, (400, 409, 413, 422))},
        "/admin/models/{version}": {"delete": unload},
    }


def _security() -> dict[str, Any]:
    return {
        "bearer": {
            "type": "http",
            "scheme": "bearer",
            "description": "The admin token serve was started with (MLOPS_ADMIN_TOKEN).",
        }
    }


def _components() -> dict[str, Any]:
    strings = {"type": "array", "items": {"type": "string"}}
    return {
        "Error": {
            "type": "object",
            "properties": {"error": {"type": "string"}},
            "required": ["error"],
        },
        "ScoreResponse": {
            "type": "object",
            "properties": {
                "model_name": {"type": "string"},
                "model_version": {"type": "string"},
                "predictions": {"type": "array"},
                "probabilities": {"type": "array", "items": {"type": "array"}},
                "classes": {"type": "array"},
            },
            "required": ["model_name", "model_version", "predictions"],
        },
        "InferResponse": {
            "type": "object",
            "properties": {
                "model_name": {"type": "string"},
                "model_version": {"type": "string"},
                "id": {"type": "string"},
                "outputs": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {
                            "name": {"type": "string"},
                            "shape": {"type": "array", "items": {"type": "integer"}},
                            "datatype": {"type": "string"},
                            "data": {"type": "array"},
                        },
                        "required": ["name", "shape", "datatype", "data"],
                    },
                },
                "parameters": {"type": "object"},
            },
            "required": ["model_name", "model_version", "outputs"],
        },
        "ServerMetadata": {
            "type": "object",
            "properties": {
                "name": {"type": "string"},
                "version": {"type": "string"},
                "extensions": strings,
            },
            "required": ["name", "version", "extensions"],
        },
        "ModelMetadata": {
            "type": "object",
            "properties": {
                "name": {"type": "string"},
                "versions": strings,
                "platform": {"type": "string"},
                "inputs": {"type": "array"},
                "outputs": {"type": "array"},
            },
            "required": ["name", "versions", "platform", "inputs", "outputs"],
        },
        "Live": {"type": "object", "properties": {"live": {"type": "boolean"}}},
        "Ready": {"type": "object", "properties": {"ready": {"type": "boolean"}}},
        "Traffic": {
            "type": "object",
            "properties": {
                "model_name": {"type": "string"},
                "weights": {"type": "object"},
                "shares": {"type": "object"},
                "versions": {"type": "object"},
            },
        },
    }
