"""The scoring service: Open Inference Protocol v2 (KServe) and ``/score``, on FastAPI.

Handlers take the raw body and parse it with ``payload`` (orjson, no per-request pydantic
models): the hot path is a read, a parse, one onnxruntime call and a write. Every refusal is a
4xx with ``{"error": "..."}`` (the v2 protocol's error shape); a bug is a logged 500, never a
crash. Responses carry ``x-model-version`` and ``x-request-id``.
"""

from __future__ import annotations

import asyncio
import gc
import hmac
import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from mlops_ci import __version__
from mlops_ci.errors import MlopsError
from mlops_ci.serve.accesslog import AccessLog, RequestIds
from mlops_ci.serve.inputlog import InputLog, LogSettings
from mlops_ci.serve.metrics import ServiceMetrics
from mlops_ci.serve.model import LoadedModel, ModelSpec, Prediction, read_spec
from mlops_ci.serve.openapi import openapi_document
from mlops_ci.serve.payload import (
    InferRequest,
    Limits,
    PayloadError,
    batch_rows,
    echoed,
    parse_infer,
    parse_json,
    parse_score,
)
from mlops_ci.serve.protocol import set_read_timeout, within
from mlops_ci.serve.router import Router, SharedState, Split, StateFile, parse_split

THREADPOOL_ROWS = 256  # larger batches score off the event loop
REQUEST_ID_CHARS = 128  # a longer x-request-id is cut: access-log lines stay under PIPE_BUF
log = logging.getLogger("mlops_ci.serve")


@dataclass(frozen=True)
class ServiceSettings:
    """Everything a worker needs to build the app (JSON-able: workers get it from the env)."""

    models: list[ModelSpec]
    weights: dict[str, float]
    intra_op_threads: int = 1
    max_payload_bytes: int = 1024 * 1024
    read_timeout_s: float = 30.0  # for the head (serve.protocol) and then the body
    max_batch_rows: int = 10_000
    admin_token: str | None = None
    access_log: bool = True
    input_log: LogSettings | None = None
    state_file: Path | None = None  # shared by workers when there are several


class Service:
    """The loaded versions, the router, the metrics and the input log of one worker.

    Versions can be loaded and unloaded while serving (the admin endpoints, which a rollout
    drives); with several workers each change goes through the state file and every worker
    applies it on its next request.
    """

    def __init__(self, settings: ServiceSettings) -> None:
        self.settings = settings
        self.models: dict[str, LoadedModel] = {}
        self.limits: dict[str, Limits] = {}
        self.name = settings.models[0].name
        for spec in settings.models:
            self._add(LoadedModel(spec, settings.intra_op_threads))
        self.router = Router(list(self.models), Split(settings.weights))
        self.shared = StateFile(settings.state_file) if settings.state_file else None
        self.metrics = ServiceMetrics(self.name)
        self.metrics.set_shares(self.router.split.shares())
        self.input_log = InputLog(settings.input_log) if settings.input_log else None
        self.access = AccessLog() if settings.access_log else None
        self.ids = RequestIds()

    def _add(self, model: LoadedModel) -> None:
        self.models[model.spec.version] = model
        self.limits[model.spec.version] = Limits(
            model.n_features, model.spec.features, self.settings.max_batch_rows, model.schema
        )

    def sync(self) -> None:
        """Apply a change another worker made (a no-op most calls: a clock check)."""
        if self.shared is None:
            return
        state = self.shared.poll()
        if state is None:
            return
        for version, folder in state.models.items():
            if version not in self.models:
                self._add(LoadedModel(read_spec(Path(folder)), self.settings.intra_op_threads))
        for version in set(self.models) - set(state.models):
            del self.models[version], self.limits[version]
        self.router.versions = set(self.models)
        self.router.split = Split(state.weights)
        self.metrics.set_shares(self.router.split.shares())

    def load(self, folder: Path) -> LoadedModel:
        """Load a package folder as a new version taking no traffic yet."""
        spec = read_spec(folder)
        if spec.name != self.name:
            raise PayloadError(
                422, f"{folder} holds '{spec.name}'; this endpoint serves '{self.name}'"
            )
        current = self.models.get(spec.version)
        if current is not None and current.spec.sha256 != spec.sha256:
            raise PayloadError(409, f"version {spec.version} is loaded with other files")
        model = current or LoadedModel(spec, self.settings.intra_op_threads)
        self._add(model)
        self.router.versions = set(self.models)
        self._publish()
        return model

    def unload(self, version: str) -> None:
        if version not in self.models:
            raise PayloadError(404, f"version '{echoed(version)}' is not loaded")
        if self.router.split.weights.get(version, 0) > 0:
            raise PayloadError(409, f"version '{version}' still takes traffic: set its weight to 0")
        del self.models[version], self.limits[version]
        self.router.versions = set(self.models)
        self.router.split = Split(
            {v: w for v, w in self.router.split.weights.items() if v != version}
        )
        self._publish()

    def set_split(self, split: Split) -> None:
        self.router.split = split
        self.metrics.set_shares(split.shares())
        self._publish()

    def _publish(self) -> None:
        if self.shared is not None:
            self.shared.write(self.state())

    def state(self) -> SharedState:
        return SharedState(
            dict(self.router.split.weights),
            {v: str(m.spec.folder) for v, m in self.models.items()},
        )

    def predict(self, version: str, x: Any) -> Awaitable[Prediction] | Prediction:
        model = self.models[version]
        if batch_rows(x) > THREADPOOL_ROWS:
            return run_in_threadpool(model.predict, x)
        return model.predict(x)


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(
        orjson.dumps(data, option=orjson.OPT_SERIALIZE_NUMPY),
        status_code=status,
        media_type="application/json",
        headers=headers,
    )


def create_app(settings: ServiceSettings) -> FastAPI:
    service = Service(settings)
    set_read_timeout(settings.read_timeout_s)  # the heads', in this (worker) process

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if service.input_log is not None:
            service.input_log.start()
        # The models, the app and the imports live as long as the process: out of the
        # collector's reach, a full collection no longer walks them while a request waits.
        gc.collect()
        gc.freeze()
        log.info(
            "serving %s versions %s, split %s",
            service.name,
            ", ".join(service.models),
            service.router.split.weights,
        )
        yield
        if service.input_log is not None:
            service.input_log.close()
        if service.access is not None:
            service.access.flush()

    app = FastAPI(
        title=f"mlops-ci: {service.name}",
        version=__version__,
        lifespan=lifespan,
        docs_url="/docs",
        redoc_url=None,
    )
    app.state.service = service

    def document() -> dict[str, Any]:
        service.sync()
        outputs = {o for model in service.models.values() for o in model.output_names}
        return openapi_document(
            service.name, {v: service.limits[v] for v in service.models}, outputs
        )

    app.openapi = document  # type: ignore[method-assign]  # rebuilt per read: versions change
    _error_handlers(app)
    _scoring_routes(app, service)
    _metadata_routes(app, service)
    _admin_routes(app, service)
    return app


# --- scoring --------------------------------------------------------------------------------


Handler = Callable[[Request, bytes, str], Awaitable[tuple[str, int, Response]]]


def _scoring_routes(app: FastAPI, service: Service) -> None:
    async def score(request: Request, body: bytes, request_id: str) -> tuple[str, int, Response]:
        version = service.router.route(request.headers.get("x-model-version"))
        request.state.version = version  # an error from here on is this version's
        x = parse_score(body, service.limits[version])
        prediction = await _maybe_await(service.predict(version, x))
        await _log_inputs(service, version, request_id, x, prediction)
        data: dict[str, Any] = {"model_name": service.name, "model_version": version}
        if prediction.labels is not None:
            data["predictions"] = prediction.labels.tolist()
            if prediction.scores.shape[1]:  # none from a classifier without predict_proba
                data["probabilities"] = prediction.scores
            classes = service.models[version].spec.classes
            if classes:
                data["classes"] = classes
        else:
            data["predictions"] = (
                prediction.scores[:, 0] if prediction.scores.shape[1] == 1 else (prediction.scores)
            )
        return version, batch_rows(x), json_response(data, headers=_headers(version, request_id))

    def infer_for(pinned_by_path: bool) -> Handler:
        async def infer(
            request: Request, body: bytes, request_id: str
        ) -> tuple[str, int, Response]:
            _check_name(service, request.path_params["name"])
            pinned = (
                request.path_params["version"]
                if pinned_by_path
                else request.headers.get("x-model-version")
            )
            version = service.router.route(pinned)
            request.state.version = version
            header = request.headers.get("inference-header-content-length")
            parsed = parse_infer(body, _int_header(header), service.limits[version])
            prediction = await _maybe_await(service.predict(version, parsed.x))
            await _log_inputs(service, version, parsed.id or request_id, parsed.x, prediction)
            data = _v2_response(service, version, parsed, prediction)
            return (
                version,
                batch_rows(parsed.x),
                json_response(data, headers=_headers(version, request_id)),
            )

        return infer

    _post(app, service, "/score", "score", score)
    _post(app, service, "/v2/models/{name}/infer", "infer", infer_for(False))
    _post(app, service, "/v2/models/{name}/versions/{version}/infer", "infer", infer_for(True))


def _post(app: FastAPI, service: Service, path: str, endpoint: str, handler: Handler) -> None:
    limit = service.settings.max_payload_bytes
    timeout = service.settings.read_timeout_s

    async def route(request: Request) -> Response:
        started = time.perf_counter()
        request_id = request.headers.get("x-request-id", "")[:REQUEST_ID_CHARS] or service.ids.new()
        version, rows = "-", 0
        try:
            service.sync()
            _check_content_type(request)
            body = await _read_body(request, limit, timeout)
            version, rows, response = await handler(request, body, request_id)
        except PayloadError as err:
            headers = {"x-request-id": request_id}
            if err.status == 408:  # the rest of the body may still come: not on this connection
                headers["connection"] = "close"
            response = json_response({"error": str(err)}, err.status, headers)
        except Exception:  # a bug: logged with its traceback, answered without one
            log.exception("%s %s failed", request.method, request.scope["path"])
            response = json_response({"error": "internal error"}, 500, {"x-request-id": request_id})
        elapsed = time.perf_counter() - started
        version = getattr(request.state, "version", version)
        service.metrics.observe(version, endpoint, response.status_code, elapsed, rows)
        if service.access is not None:
            client = request.scope.get("client")
            service.access.write(
                {
                    "ts": time.time(),
                    "method": request.method,
                    "path": request.scope["path"][:256],
                    "status": response.status_code,
                    "ms": round(elapsed * 1000, 3),
                    "model": service.name,
                    "version": version,
                    "rows": rows,
                    "request_id": request_id,
                    "client": client[0] if client else None,
                }
            )
        return response

    # A plain Starlette route: FastAPI's would solve dependencies for each request, and the
    # OpenAPI document is written by ``openapi`` anyway.
    app.router.add_route(path, route, methods=["POST"], name=endpoint)


def _check_content_type(request: Request) -> None:
    """JSON, or the v2 binary tensor extension; anything else is a 415 (as MLflow's scoring
    server answers). A request without a Content-Type is read as JSON, as curl -d sends it."""
    given = request.headers.get("content-type")
    if given is None:
        return
    media = given.split(";", 1)[0].strip().lower()
    if media == "application/json" or media.endswith("+json"):
        return
    binary = request.headers.get("inference-header-content-length") is not None
    if binary and media == "application/octet-stream":
        return
    accepted = "application/json" + (", or application/octet-stream with the binary header"
                                     if binary else "")  # fmt: skip
    raise PayloadError(415, f"Content-Type '{given[:60]}' is not supported: send {accepted}")


async def _read_body(request: Request, limit: int, timeout: float = 30.0) -> bytes:
    """The body, at most ``limit`` bytes, all arrived within ``timeout`` seconds (a slow
    client holds no slot for ever: 408)."""
    declared = _int_header(request.headers.get("content-length"))
    if declared is not None and declared > limit:
        raise PayloadError(413, f"request body of {declared} bytes is over the {limit}-byte limit")
    chunks: list[bytes] = []

    async def read() -> None:
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise PayloadError(413, f"request body is over the {limit}-byte limit")
            chunks.append(chunk)

    try:
        await within(timeout, read())
    except asyncio.TimeoutError:
        raise PayloadError(
            408, f"the request body did not arrive within {timeout:g} s (serve.read_timeout_s)"
        ) from None
    return b"".join(chunks)


def _int_header(value: str | None) -> int | None:
    if value is None:
        return None
    # str.isdigit accepts '²' and other digits int() refuses: only ASCII 0-9, bounded.
    if not value.isascii() or not value.isdigit() or len(value) > 12:
        raise PayloadError(400, f"header value '{value[:40]}' must be a whole number")
    return int(value)


async def _maybe_await(value: Awaitable[Prediction] | Prediction) -> Prediction:
    return value if isinstance(value, Prediction) else await value


def _headers(version: str, request_id: str) -> dict[str, str]:
    return {"x-model-version": version, "x-request-id": request_id}


async def _log_inputs(
    service: Service, version: str, request_id: str, x: Any, prediction: Prediction
) -> None:
    """Queue the rows for the input log; with monitor.durable, wait until they are on disk."""
    if service.input_log is None:
        return
    done = service.input_log.submit(version, request_id, x, prediction.labels, prediction.scores)
    if done is not None:
        try:
            await asyncio.wrap_future(done)
        except OSError as err:
            raise PayloadError(
                503, f"the input log cannot be written ({err}); not answered"
            ) from None


def _check_name(service: Service, name: str) -> None:
    if name != service.name:
        raise PayloadError(
            404, f"model '{echoed(name)}' is not served here (serving '{service.name}')"
        )


def _v2_response(
    service: Service, version: str, parsed: InferRequest, prediction: Prediction
) -> dict[str, Any]:
    tensors = {}
    if prediction.labels is not None:
        tensors["label"] = _tensor("label", prediction.labels)
        if prediction.scores.shape[1]:
            tensors["probabilities"] = _tensor(
                "probabilities", prediction.scores.astype(np.float32)
            )
    else:
        tensors["variable"] = _tensor("variable", prediction.scores.astype(np.float32))
    wanted = parsed.outputs or tuple(tensors)
    unknown = [n for n in wanted if n not in tensors]
    if unknown:
        raise PayloadError(
            400, f"output '{unknown[0]}' does not exist (outputs: {', '.join(tensors)})"
        )
    data: dict[str, Any] = {
        "model_name": service.name,
        "model_version": version,
        "outputs": [tensors[n] for n in wanted],
    }
    classes = service.models[version].spec.classes
    if "probabilities" in tensors and classes:
        data["parameters"] = {"classes": list(classes)}
    if parsed.id is not None:
        data["id"] = parsed.id
    return data


def _tensor(name: str, values: Any) -> dict[str, Any]:
    return {
        "name": name,
        "shape": list(values.shape),
        "datatype": _datatype(values),
        "data": values.ravel().tolist(),
    }


def _datatype(values: Any) -> str:
    kind = values.dtype.kind
    if kind == "f":
        return "FP32" if values.dtype.itemsize == 4 else "FP64"
    if kind in "iu":
        return "INT64"
    if kind == "b":
        return "BOOL"
    return "BYTES"


# --- metadata, health, metrics ------------------------------------------------------------


def _metadata_routes(app: FastAPI, service: Service) -> None:
    @app.get("/v2")
    async def server_metadata() -> Response:
        return json_response(
            {"name": "mlops-ci", "version": __version__, "extensions": ["binary_tensor_data"]}
        )

    @app.get("/v2/health/live")
    async def live() -> Response:
        return json_response({"live": True})

    @app.get("/v2/health/ready")
    async def ready() -> Response:
        return json_response({"ready": True})

    for path, build in (
        ("/v2/models/{name}", _model_metadata),
        ("/v2/models/{name}/versions/{version}", _model_metadata),
        ("/v2/models/{name}/ready", _ready),
        ("/v2/models/{name}/versions/{version}/ready", _ready),
    ):
        app.add_api_route(path, _described(service, build), methods=["GET"])

    @app.get("/metrics")
    async def metrics() -> Response:
        service.metrics.set_shares(service.router.split.shares())
        return Response(service.metrics.render(), media_type=service.metrics.content_type)


Describe = Callable[[Service, str, str | None], dict[str, Any]]


def _described(service: Service, build: Describe) -> Callable[[Request], Awaitable[Response]]:
    """A GET endpoint answering ``build(service, name, version)``, or its 404 as JSON."""

    async def endpoint(request: Request) -> Response:
        params = request.path_params
        try:
            return json_response(build(service, params["name"], params.get("version")))
        except PayloadError as err:
            return json_response({"error": str(err)}, err.status)

    return endpoint


def _version_of(service: Service, name: str, version: str | None) -> str | None:
    _check_name(service, name)
    if version is not None and version not in service.models:
        raise PayloadError(
            404, f"version '{echoed(version)}' of '{echoed(name)}' is not served here"
        )
    return version


def _model_metadata(service: Service, name: str, version: str | None) -> dict[str, Any]:
    version = _version_of(service, name, version)
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
        "inputs": _input_metadata(model),
        "outputs": outputs,
        "parameters": {"features": list(model.spec.features), "sha256": model.spec.sha256},
    }


def _input_metadata(model: LoadedModel) -> list[dict[str, Any]]:
    """The one [rows, features] tensor, or one tensor per column where a column is text or the
    graph takes named inputs (all-numeric models also accept the one tensor then)."""
    spec = model.spec
    if spec.schema.all_numeric and (spec.layout == "matrix" or spec.format != "onnx"):
        return [{"name": "input", "datatype": "FP32", "shape": [-1, model.n_features]}]
    return [
        {"name": f.name, "datatype": "BYTES" if f.kind == "string" else "FP32", "shape": [-1, 1]}
        for f in spec.schema.features
    ]


def _ready(service: Service, name: str, version: str | None) -> dict[str, Any]:
    _version_of(service, name, version)
    return {"name": name, "ready": True}


# --- admin: the traffic split -------------------------------------------------------------


AdminHandler = Callable[[Request, Any], dict[str, Any]]


def _admin_routes(app: FastAPI, service: Service) -> None:
    """The traffic split and the loaded versions, behind a bearer token."""

    def current(request: Request, doc: Any) -> dict[str, Any]:
        service.sync()
        split = service.router.split
        return {
            "model_name": service.name,
            "weights": split.weights,
            "shares": split.shares(),
            "versions": {v: m.spec.sha256 for v, m in service.models.items()},
        }

    def put_traffic(request: Request, doc: Any) -> dict[str, Any]:
        service.sync()
        weights = doc.get("weights") if isinstance(doc, dict) else None
        split = parse_split(weights, set(service.models))
        service.set_split(split)
        log.info("traffic split set to %s", split.weights)
        return current(request, doc)

    def load(request: Request, doc: Any) -> dict[str, Any]:
        service.sync()
        path = doc.get("path") if isinstance(doc, dict) else None
        if not isinstance(path, str) or not path:
            raise PayloadError(422, 'send {"path": "PACKAGE_FOLDER"}')
        if len(path) > 4096 or "\0" in path:
            raise PayloadError(422, "'path' must be a folder path (at most 4,096 characters)")
        try:
            model = service.load(Path(path))
        except MlopsError as err:
            raise PayloadError(422, str(err)) from None
        except OSError as err:  # a name too long for this filesystem, a folder it cannot read
            raise PayloadError(422, f"'path' cannot be read: {err.strerror or err}") from None
        log.info("loaded %s v%s from %s", service.name, model.spec.version, path)
        return current(request, doc)

    def unload(request: Request, doc: Any) -> dict[str, Any]:
        service.sync()
        service.unload(request.path_params["version"])
        return current(request, doc)

    _admin(app, service, "/admin/traffic", {"GET": current, "PUT": put_traffic})
    _admin(app, service, "/admin/models", {"POST": load})
    _admin(app, service, "/admin/models/{version}", {"DELETE": unload})


def _admin(app: FastAPI, service: Service, path: str, handlers: dict[str, AdminHandler]) -> None:
    """One route per path, so a 405 lists every method the path takes in ``Allow``."""
    token = service.settings.admin_token

    async def endpoint(request: Request) -> Response:
        try:
            if not token:
                raise PayloadError(403, "admin endpoints are off: start serve with an admin token")
            given = request.headers.get("authorization", "")
            if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
                raise PayloadError(401, "admin endpoints need 'Authorization: Bearer TOKEN'")
            method = request.method
            body = await _read_body(request, 64 * 1024) if method in ("PUT", "POST") else b""
            doc = parse_json(body) if body else None
            return json_response(handlers[method](request, doc))
        except PayloadError as err:
            return json_response({"error": str(err)}, err.status)

    app.add_api_route(path, endpoint, methods=list(handlers))


def _error_handlers(app: FastAPI) -> None:
    """Framework-level refusals (unknown path, wrong method) in the same JSON shape."""

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, err: StarletteHTTPException) -> Response:
        headers = dict(err.headers) if err.headers else None  # a 405's Allow
        return json_response({"error": str(err.detail)}, err.status_code, headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, err: RequestValidationError) -> Response:
        return json_response({"error": str(err.errors()[:1])}, 422)


def settings_to_env(settings: ServiceSettings) -> str:
    """The settings as JSON for worker processes (``MLOPS_SERVE_SETTINGS``); the admin token
    travels apart, in ``MLOPS_SERVE_ADMIN_TOKEN``, so it is never part of a logged value."""
    return orjson.dumps(asdict(replace(settings, admin_token=None)), default=str).decode()


def settings_from_env() -> ServiceSettings:
    raw = orjson.loads(os.environ["MLOPS_SERVE_SETTINGS"])
    models = [
        ModelSpec(
            **{
                **m,
                "folder": Path(m["folder"]),
                "features": tuple(m["features"]),
                "kinds": tuple(m["kinds"]),
                "classes": tuple(m["classes"]),
                "nullable": tuple(m["nullable"]),
            }
        )
        for m in raw["models"]
    ]
    log_settings = None
    if raw.get("input_log"):
        il = raw["input_log"]
        log_settings = LogSettings(
            **{**il, "folder": Path(il["folder"]), "features": tuple(il["features"])}
        )
    return ServiceSettings(
        models=models,
        weights={str(k): float(v) for k, v in raw["weights"].items()},
        intra_op_threads=raw["intra_op_threads"],
        max_payload_bytes=raw["max_payload_bytes"],
        read_timeout_s=raw["read_timeout_s"],
        max_batch_rows=raw["max_batch_rows"],
        admin_token=os.environ.get("MLOPS_SERVE_ADMIN_TOKEN") or None,
        access_log=raw["access_log"],
        input_log=log_settings,
        state_file=Path(raw["state_file"]) if raw.get("state_file") else None,
    )


def app_from_env() -> FastAPI:
    """uvicorn factory for worker processes."""
    return create_app(settings_from_env())
