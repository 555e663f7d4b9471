"""The scoring service: Open Inference Protocol v2 (KServe) and ``/score``, on FastAPI.

Handlers take the raw body and parse it with ``payload`` (orjson, no per-request pydantic
models): the hot path is a read, a parse, one onnxruntime call and a write. Every refusal is a
4xx with ``{"error": "..."}`` (the v2 protocol's error shape); a bug is a logged 500, never a
crash. Responses carry ``x-model-version`` and ``x-request-id``.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.background import BackgroundTask
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.routing import Match, Route
from starlette.types import Receive, Scope, Send

from mlops_ci import __version__
from mlops_ci.serve.admin import admin_routes
from mlops_ci.serve.bodies import int_header, json_response, read_body
from mlops_ci.serve.model import Prediction
from mlops_ci.serve.openapi import openapi_document
from mlops_ci.serve.payload import (
    Limits,
    PayloadError,
    batch_rows,
    parse_score,
)
from mlops_ci.serve.protocol import set_read_timeout
from mlops_ci.serve.service import Service, ServiceSettings, settings_from_env
from mlops_ci.serve.tensorbody import score_tensors
from mlops_ci.serve.v2 import (
    check_name,
    infer_response,
    model_metadata,
    readiness,
    server_readiness,
)
from mlops_ci.serve.v2payload import parse_infer

REQUEST_ID_CHARS = 128  # a longer x-request-id is cut: access-log lines stay under PIPE_BUF
log = logging.getLogger("mlops_ci.serve")


class ServingApp(FastAPI):
    """FastAPI, with the scoring routes called straight from the server.

    Every request through FastAPI passes its stack: the error and exception middleware, an
    AsyncExitStack, an OpenTelemetry check that reads the environment three times, the
    router's walk of the routes, Starlette's exception wrapper. For a single-row request that
    was about a fifth of the app's time (measured in-process, ASGI calls of /score: ~90 µs a
    request against ~70 µs without it). The scoring endpoints answer every error themselves
    (``_post``), so they need none of it; every other route, and a scoring path with another
    method (405), goes through FastAPI as before.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.scoring: list[Route] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            for route in self.scoring:
                match, child = route.matches(scope)
                if match is Match.FULL:
                    scope["app"] = self
                    scope.update(child)
                    response = await route.endpoint(Request(scope, receive, send))
                    await response(scope, receive, send)
                    return
        await super().__call__(scope, receive, send)


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
        service.shadow.close()  # before the log: what it scores until then is written
        if service.input_log is not None:
            service.input_log.close()
        if service.access is not None:
            service.access.flush()
        service.close()  # the native versions' model runners

    app = ServingApp(
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
    admin_routes(app, service)
    return app


# --- scoring --------------------------------------------------------------------------------


# The version a request goes to, chosen before its body is read (a 404 for one not served).
Choose = Callable[[Request], str]
# The answer to a read body: (request, body, request id, the version chosen before the read).
Handler = Callable[[Request, bytes, str, str], Awaitable[tuple[str, int, Response]]]


def _scoring_routes(app: ServingApp, service: Service) -> None:
    def choose_score(request: Request) -> str:
        return service.router.route(request.headers.get("x-model-version"))

    async def score(
        request: Request, body: bytes, request_id: str, chosen: str
    ) -> tuple[str, int, Response]:
        version = chosen if chosen in service.models else choose_score(request)
        request.state.version = version  # an error from here on is this version's
        # What the answer needs, taken before the await: the version may be unloaded while
        # the request waits, and it is still answered by the model it started with.
        limits, classes = service.limits[version], service.models[version].spec.classes
        x = score_tensors(body, limits) if limits.tensors is not None else parse_score(body, limits)
        prediction = await _maybe_await(service.predict(version, x))
        await _log_inputs(service, version, limits, request_id, x, prediction)
        data: dict[str, Any] = {"model_name": service.name, "model_version": version}
        if prediction.labels is not None:
            data["predictions"] = prediction.labels.tolist()
            if prediction.scores.shape[1]:  # none from a classifier without predict_proba
                data["probabilities"] = prediction.scores
            if classes:
                data["classes"] = classes
        else:
            data["predictions"] = (
                prediction.scores[:, 0] if prediction.scores.shape[1] == 1 else (prediction.scores)
            )
        response = json_response(data, headers=_headers(version, request_id))
        _shadowed(service, response, version, limits, request_id, x, body, "score", None)
        return version, batch_rows(x), response

    def infer_for(pinned_by_path: bool) -> tuple[Choose, Handler]:
        def choose(request: Request) -> str:
            params = request.path_params
            if params["name"] != service.name:
                check_name(service, params["name"])  # its 404
            pinned = params["version"] if pinned_by_path else request.headers.get("x-model-version")
            return service.router.route(pinned)

        async def infer(
            request: Request, body: bytes, request_id: str, chosen: str
        ) -> tuple[str, int, Response]:
            version = chosen if chosen in service.models else choose(request)
            request.state.version = version
            headers = request.headers
            length = headers.get("inference-header-content-length")
            header = None if length is None else int_header(length)
            # Taken before the await, as in ``score``: the version may be unloaded meanwhile.
            limits, classes = service.limits[version], service.models[version].spec.classes
            parsed = parse_infer(body, header, limits)
            logged_id = parsed.id or request_id
            prediction = service.predict(version, parsed.x)
            if not isinstance(prediction, Prediction):  # batched, or off the event loop
                prediction = await prediction
            if service.input_log is not None:
                await _log_inputs(service, version, limits, logged_id, parsed.x, prediction)
            data = infer_response(service.name, version, classes, parsed, prediction)
            response = json_response(data, headers=_headers(version, request_id))
            _shadowed(
                service, response, version, limits, logged_id, parsed.x, body, "infer", header
            )
            return version, batch_rows(parsed.x), response

        return choose, infer

    _post(app, service, "/score", "score", choose_score, score)
    _post(app, service, "/v2/models/{name}/infer", "infer", *infer_for(False))
    _post(app, service, "/v2/models/{name}/versions/{version}/infer", "infer", *infer_for(True))


def _post(
    app: ServingApp, service: Service, path: str, endpoint: str, choose: Choose, handler: Handler
) -> None:
    """The route of a scoring endpoint: the version is chosen before the body is read, so a
    batch of that version (and only of that version) may wait for the body (serve.batching);
    unloaded meanwhile, the handler chooses again."""
    limit = service.settings.max_payload_bytes
    timeout = service.settings.read_timeout_s

    async def route(request: Request) -> Response:
        started = time.perf_counter()
        request_id = request.headers.get("x-request-id", "")[:REQUEST_ID_CHARS] or service.ids.new()
        version, rows = "-", 0
        try:
            service.sync()
            _check_content_type(request)
            chosen = choose(request)
            service.reading[chosen] += 1  # a batch of this version may wait for this body
            try:
                body = await read_body(request, limit, timeout)
            finally:
                service.reading[chosen] -= 1
            version, rows, response = await handler(request, body, request_id, chosen)
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
    scoring = Route(path, route, methods=["POST"], name=endpoint)
    app.router.routes.append(scoring)
    app.scoring.append(scoring)


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


def _shadowed(
    service: Service,
    response: Response,
    version: str,
    limits: Limits,
    request_id: str,
    x: Any,
    body: bytes,
    kind: str,
    header: int | None,
) -> None:
    """When the shadow takes this request, queue its rows for it once the answer is sent (a
    background task that only appends to the shadow's queue: the connection's next request
    does not wait on the shadow's scoring)."""
    shadow = service.shadow.chosen(version)
    if shadow is None or limits.tensors is not None:  # a tensor model is not shadowed yet
        return

    async def queue() -> None:
        service.shadow.offer(shadow, limits, request_id, x, body, kind, header)

    response.background = BackgroundTask(queue)


async def _maybe_await(value: Awaitable[Prediction] | Prediction) -> Prediction:
    return value if isinstance(value, Prediction) else await value


def _headers(version: str, request_id: str) -> dict[str, str]:
    return {"x-model-version": version, "x-request-id": request_id}


async def _log_inputs(
    service: Service, version: str, limits: Limits, request_id: str, x: Any, prediction: Prediction
) -> None:
    """Queue the rows for the input log; with monitor.durable, wait until they are on disk.
    A tensor model's inputs are not logged (the log is a table's columns; issue 43)."""
    if service.input_log is None or limits.tensors is not None:
        return
    done = service.input_log.submit(
        version, request_id, x, prediction.labels, prediction.scores, limits.features
    )
    if done is not None:
        try:
            await asyncio.wrap_future(done)
        except OSError as err:
            raise PayloadError(
                503, f"the input log cannot be written ({err}); not answered"
            ) from None


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
        return json_response(server_readiness(service))

    for path, build in (
        ("/v2/models/{name}", model_metadata),
        ("/v2/models/{name}/versions/{version}", model_metadata),
        ("/v2/models/{name}/ready", readiness),
        ("/v2/models/{name}/versions/{version}/ready", readiness),
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


def _error_handlers(app: FastAPI) -> None:
    """Framework-level refusals (unknown path, wrong method) in the same JSON shape."""

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, err: StarletteHTTPException) -> Response:
        headers = dict(err.headers) if err.headers else None  # a 405's Allow
        return json_response({"error": str(err.detail)}, err.status_code, headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, err: RequestValidationError) -> Response:
        return json_response({"error": str(err.errors()[:1])}, 422)


def app_from_env() -> FastAPI:
    """uvicorn factory for worker processes."""
    return create_app(settings_from_env())
