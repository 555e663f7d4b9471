"""The near-limit reference for `mlops-ci serve`: the least a FastAPI + onnxruntime scoring app
does for one /score or Open Inference Protocol v2 infer request (read the body, parse it with
orjson — or, with the binary tensor extension, its JSON header and the raw tensor bytes after
it —, one session run, write the answer), on the same uvicorn settings, without checks,
metrics or logs. Any package folder whose graph answers ``label`` and ``probabilities`` (the
demo's, and benchmarks/_heavy_models.py's MLP and forest).

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

V2_DTYPES = {"FP32": "<f4", "FP64": "<f8"}  # what the benchmark's binary bodies send


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

    @app.post("/v2/models/{model}/infer")
    async def infer(model: str, request: Request) -> Response:
        body = await request.body()
        header = request.headers.get("inference-header-content-length")
        if header is None:
            tensor = orjson.loads(body)["inputs"][0]
            x = np.asarray(tensor["data"], dtype=np.float32).reshape(tensor["shape"])
        else:
            tensor = orjson.loads(body[: int(header)])["inputs"][0]
            raw = np.frombuffer(body[int(header) :], dtype=V2_DTYPES[tensor["datatype"]])
            x = raw.astype(np.float32, copy=False).reshape(tensor["shape"])
        labels, probabilities = session.run(None, {name: x})
        outputs = [
            {"name": "label", "shape": [len(labels)], "datatype": "BYTES", "data": labels.tolist()},
            {
                "name": "probabilities",
                "shape": list(probabilities.shape),
                "datatype": "FP32",
                "data": probabilities.ravel(),
            },
        ]
        data = {"model_name": model, "outputs": outputs}
        return Response(
            orjson.dumps(data, option=orjson.OPT_SERIALIZE_NUMPY), media_type="application/json"
        )

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
