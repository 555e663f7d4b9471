"""The near-limit reference for `mlops-ci serve`: the least a FastAPI + onnxruntime scoring app
does for one /score request (read the body, parse it with orjson, one session run, write the
answer), on the same uvicorn settings, without checks, metrics or logs.

Run: python benchmarks/_bare_app.py MODEL_DIR PORT
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import orjson
import uvicorn
from fastapi import FastAPI, Request
from starlette.responses import Response


def create(folder: Path) -> FastAPI:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(
        str(folder / "model.onnx"), options, providers=["CPUExecutionProvider"]
    )
    name = session.get_inputs()[0].name
    app = FastAPI()

    @app.get("/v2/health/ready")
    async def ready() -> Response:
        return Response(b'{"ready":true}', media_type="application/json")

    @app.post("/score")
    async def score(request: Request) -> Response:
        x = np.asarray(orjson.loads(await request.body())["inputs"], dtype=np.float32)
        labels, probabilities = session.run(None, {name: x})
        data = {"predictions": labels.tolist(), "probabilities": probabilities}
        body = orjson.dumps(data, option=orjson.OPT_SERIALIZE_NUMPY)
        return Response(body, media_type="application/json")

    return app


if __name__ == "__main__":
    uvicorn.run(
        create(Path(sys.argv[1])),
        host="127.0.0.1",
        port=int(sys.argv[2]),
        access_log=False,
        server_header=False,
        log_level="warning",
    )
