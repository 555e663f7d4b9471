"""The admin endpoints, behind a bearer token: the traffic split, the loaded versions, and the
shadow version. A rollout (``targets/``) drives them; every change reaches every worker through
the service's shared state."""

from __future__ import annotations

import hmac
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from starlette.responses import Response

from mlops_ci.errors import MlopsError
from mlops_ci.serve.bodies import json_response, read_body
from mlops_ci.serve.payload import PayloadError, parse_json
from mlops_ci.serve.router import parse_split
from mlops_ci.serve.service import Service
from mlops_ci.serve.shadow import parse_shadow

log = logging.getLogger("mlops_ci.serve")


AdminHandler = Callable[[Request, Any], dict[str, Any]]


def admin_routes(app: FastAPI, service: Service) -> None:
    """The traffic split and the loaded versions, behind a bearer token."""

    def current(request: Request, doc: Any) -> dict[str, Any]:
        service.sync()
        split = service.router.split
        return {
            "model_name": service.name,
            "weights": split.weights,
            "shares": split.shares(),
            "versions": {v: m.spec.sha256 for v, m in service.models.items()},
            "shadow": _shadow_doc(service),
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

    def put_shadow(request: Request, doc: Any) -> dict[str, Any]:
        service.sync()
        shadow = parse_shadow(doc, set(service.models))
        service.set_shadow(shadow)
        log.info("shadow set to v%s (%g %% of requests)", shadow.version, shadow.percent)
        return current(request, doc)

    def delete_shadow(request: Request, doc: Any) -> dict[str, Any]:
        service.sync()
        if service.shadow.shadow is not None:
            service.set_shadow(None)
            log.info("shadow removed")
        return current(request, doc)

    _admin(app, service, "/admin/traffic", {"GET": current, "PUT": put_traffic})
    _admin(
        app, service, "/admin/shadow", {"GET": current, "PUT": put_shadow, "DELETE": delete_shadow}
    )
    _admin(app, service, "/admin/models", {"POST": load})
    _admin(app, service, "/admin/models/{version}", {"DELETE": unload})


def _shadow_doc(service: Service) -> dict[str, Any] | None:
    shadow = service.shadow.shadow
    if shadow is None:
        return None
    return {
        "version": shadow.version,
        "percent": shadow.percent,
        "queued_rows": service.shadow.queued_rows(),
    }


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
            body = await read_body(request, 64 * 1024) if method in ("PUT", "POST") else b""
            doc = parse_json(body) if body else None
            return json_response(handlers[method](request, doc))
        except PayloadError as err:
            return json_response({"error": str(err)}, err.status)

    app.add_api_route(path, endpoint, methods=list(handlers))
