"""The serving app's own parsing of request headers; a request whose version is unloaded while
it waits (the app in process, over httpx's ASGI transport: no server)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from mlops_ci.config.types import Batching
from mlops_ci.serve.app import create_app
from mlops_ci.serve.inputlog import LogSettings
from mlops_ci.serve.model import ModelSpec, Prediction
from mlops_ci.serve.payload import PayloadError, batch_rows
from mlops_ci.serve.service import Service, ServiceSettings


@pytest.mark.parametrize("value", ["²", "١٢", "-1", "1e3", " 12", "9" * 13])
def test_the_binary_header_length_is_ascii_digits_only(value: str) -> None:
    """str.isdigit() accepts '²' (which int() refuses: a 500 before); any such value is a 400."""
    from mlops_ci.serve.bodies import int_header as _int_header

    with pytest.raises(PayloadError) as caught:
        _int_header(value)
    assert caught.value.status == 400
    assert _int_header("42") == 42 and _int_header(None) is None


# --- a version unloaded while its request waits -------------------------------------------

TOKEN = "t0ken"
ROWS = 300  # past THREADPOOL_ROWS: the call runs in a thread, so the test can hold it there


def onnx_package(folder: Path) -> ModelSpec:
    """A three-class logistic regression of four features, as ONNX (probabilities, classes)."""
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import FloatTensorType
    from sklearn.linear_model import LogisticRegression

    from mlops_ci.packaging.convert import INPUT_NAME

    rng = np.random.default_rng(0)
    x = rng.normal(size=(120, 4)).astype(np.float32)
    fitted = LogisticRegression().fit(x, (x[:, 0] > 0).astype(int) + (x[:, 1] > 1))
    onx = to_onnx(
        fitted,
        initial_types=[(INPUT_NAME, FloatTensorType([None, 4]))],
        options={id(fitted): {"zipmap": False}},
    )
    folder.mkdir(parents=True)
    (folder / "model.onnx").write_bytes(onx.SerializeToString())
    names = ("a", "b", "c", "d")
    return ModelSpec("m", folder.name, "onnx", folder, names, "0" * 64, classes=("x", "y", "z"))


def two_versions(tmp_path: Path, batching: Batching | None, logged: bool) -> ServiceSettings:
    """v1 takes the traffic, v2 none (pinned requests only): v2 may be unloaded."""
    specs = [onnx_package(tmp_path / v) for v in ("1", "2")]
    log = LogSettings(tmp_path / "log", "m", specs[0].features) if logged else None
    return ServiceSettings(specs, {"1": 1.0, "2": 0.0}, admin_token=TOKEN, access_log=False,
                           input_log=log, batching=batching)  # fmt: skip


class Held:
    """Wraps a model's predict: a call of ROWS rows waits (in its thread) until released."""

    def __init__(self, predict: Callable[[Any], Prediction]) -> None:
        self.predict = predict
        self.started = threading.Event()
        self.release = threading.Event()

    def __call__(self, x: Any) -> Prediction:
        if batch_rows(x) == ROWS:
            self.started.set()
            assert self.release.wait(10)
        return self.predict(x)


async def _until(event: threading.Event) -> None:
    for _ in range(1000):
        if event.is_set():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("never set")


@pytest.mark.timeout(60)
@pytest.mark.parametrize("logged", [False, True])
@pytest.mark.parametrize("batched", [False, True])
@pytest.mark.parametrize("path", ["/score", "/v2/models/m/versions/2/infer"])
def test_a_request_whose_version_is_unloaded_while_it_waits_is_answered_by_that_version(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, batched: bool, path: str, logged: bool
) -> None:
    """A pinned weight-0 version unloaded through the admin endpoint while one request's call
    runs and (batched) another waits in its batch: both finish with the version they started
    with (a KeyError and a 500 before, the waiting one a 503)."""
    app = create_app(two_versions(tmp_path, Batching(8, 0.0) if batched else None, logged))
    service: Service = app.state.service
    model = service.models["2"]
    held = Held(model.predict)
    monkeypatch.setattr(model, "predict", held)
    rng = np.random.default_rng(1)
    big, small = rng.normal(size=(ROWS, 4)).tolist(), rng.normal(size=(1, 4)).tolist()

    def body(rows: list[list[float]]) -> dict[str, Any]:
        if path == "/score":
            return {"inputs": rows}
        return {"inputs": [{"name": "input", "shape": [len(rows), 4], "datatype": "FP64",
                            "data": [v for row in rows for v in row]}]}  # fmt: skip

    async def scenario() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            pin = {"x-model-version": "2"}
            first = asyncio.ensure_future(client.post(path, json=body(big), headers=pin))
            await _until(held.started)
            second = asyncio.ensure_future(client.post(path, json=body(small), headers=pin))
            await asyncio.sleep(0.05)
            if batched:
                assert len(service.batchers["2"].waiting) == 1  # it waits for the running call
            auth = {"authorization": f"Bearer {TOKEN}"}
            gone = await client.delete("/admin/models/2", headers=auth)
            assert gone.status_code == 200 and "2" not in service.models, gone.text
            held.release.set()
            return [await first, await second]

    answers = asyncio.run(scenario())
    for answer, rows in zip(answers, (big, small), strict=True):
        assert answer.status_code == 200, answer.text
        assert answer.headers["x-model-version"] == "2"
        data = answer.json()
        want = held.predict(np.asarray(rows))
        assert want.labels is not None
        if path == "/score":
            assert data["classes"] == ["x", "y", "z"]
            assert data["predictions"] == want.labels.tolist()
        else:
            assert data["parameters"] == {"classes": ["x", "y", "z"]}
            assert data["outputs"][0]["data"] == want.labels.tolist()


@pytest.mark.timeout(60)
@pytest.mark.parametrize("stalled_for", ["2", "1"])
def test_a_batch_waits_only_for_bodies_of_its_own_version(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stalled_for: str
) -> None:
    """A body still arriving for v2 no longer holds v1's batch for max_delay_ms (it did: the
    wait counted every request being read); one for v1 still does."""
    from mlops_ci.serve import service as held

    monkeypatch.setattr(held, "requests_in_flight", lambda: 5)  # not alone: requests batch
    app = create_app(two_versions(tmp_path, Batching(8, 400.0), logged=False))
    release = asyncio.Event()

    async def trickle() -> AsyncIterator[bytes]:
        yield b'{"inputs": [[1, 2'
        await release.wait()
        yield b", 3, 4]]}"

    async def scenario() -> float:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            pin = {"x-model-version": stalled_for}
            slow = asyncio.ensure_future(client.post("/score", content=trickle(), headers=pin))
            await asyncio.sleep(0.05)  # its body is being read
            started = time.perf_counter()
            rows = {"inputs": [[0.5, 0.1, 0.2, 0.3]]}
            answers = await asyncio.gather(*(client.post("/score", json=rows) for _ in range(3)))
            waited = time.perf_counter() - started
            assert [a.status_code for a in answers] == [200] * 3
            assert {a.headers["x-model-version"] for a in answers} == {"1"}
            release.set()
            assert (await slow).status_code == 200
            return waited

    waited = asyncio.run(scenario())
    if stalled_for == "2":
        assert waited < 0.2, waited
    else:
        assert waited >= 0.35, waited
