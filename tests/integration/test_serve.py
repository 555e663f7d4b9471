"""`mlops-ci serve` as a real uvicorn process, over real HTTP on loopback."""

from __future__ import annotations

import concurrent.futures
import json
import shutil
import signal
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from mlops_ci.serve.inputlog import read_records
from tests.integration.conftest import Packaged
from tests.support.serve_helpers import ADMIN_TOKEN, serving

pytestmark = pytest.mark.slow
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def rows(packaged: Packaged, n: int = 5) -> list[list[float]]:
    return packaged.test_rows.head(n).to_numpy().tolist()


def project_with(packaged: Packaged, tmp_path: Path, extra_yaml: str) -> Path:
    """A folder with the example's mlops.yaml plus ``extra_yaml`` (serve/monitor settings)."""
    project = tmp_path / "proj"
    project.mkdir()
    text = (packaged.project / "mlops.yaml").read_text()
    (project / "mlops.yaml").write_text(text + extra_yaml + "\n")
    return project


def expected_onnx(folder: Path, x: list[list[float]]) -> tuple[list[str], np.ndarray]:
    import onnxruntime as ort

    sess = ort.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
    label, proba = sess.run(None, {"input": np.asarray(x, np.float32)})
    return [str(v) for v in label], proba


def test_score_rows_records_and_the_answering_version(packaged: Packaged, tmp_path: Path) -> None:
    x = rows(packaged)
    labels, proba = expected_onnx(packaged.v1, x)
    with serving("--model-dir", str(packaged.v1), cwd=tmp_path) as srv:
        by_rows = httpx.post(f"{srv.url}/score", json={"inputs": x})
        assert by_rows.status_code == 200, by_rows.text
        body = by_rows.json()
        assert body["model_name"] == "iris-classifier" and body["model_version"] == "1"
        assert by_rows.headers["x-model-version"] == "1" and by_rows.headers["x-request-id"]
        assert body["predictions"] == labels
        assert np.allclose(body["probabilities"], proba, atol=1e-6)

        records = packaged.test_rows.head(5).to_dict(orient="records")
        by_name = httpx.post(f"{srv.url}/score", json={"inputs": records}).json()
        assert by_name["predictions"] == labels
        split = {"dataframe_split": {"columns": list(packaged.test_rows.columns), "data": x}}
        assert httpx.post(f"{srv.url}/score", json=split).json()["predictions"] == labels
        shuffled = [dict(reversed(list(r.items()))) for r in records]  # order by name, not position
        assert (
            httpx.post(f"{srv.url}/score", json={"inputs": shuffled}).json()["predictions"]
            == labels
        )


def test_open_inference_protocol_v2(packaged: Packaged, tmp_path: Path) -> None:
    x = rows(packaged, 3)
    labels, proba = expected_onnx(packaged.v1, x)
    with serving("--model-dir", str(packaged.v1), cwd=tmp_path) as srv:
        assert httpx.get(f"{srv.url}/v2/health/live").json() == {"live": True}
        assert httpx.get(f"{srv.url}/v2/health/ready").json() == {"ready": True}
        assert httpx.get(f"{srv.url}/v2").json()["extensions"] == ["binary_tensor_data"]
        meta = httpx.get(f"{srv.url}/v2/models/iris-classifier").json()
        assert meta["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 4]}]
        assert [o["name"] for o in meta["outputs"]] == ["label", "probabilities"]
        assert meta["versions"] == ["1"]
        assert httpx.get(f"{srv.url}/v2/models/iris-classifier/versions/1/ready").json()["ready"]
        request = {
            "id": "req-7",
            "inputs": [{"name": "input", "shape": [3, 4], "datatype": "FP64", "data": x}],
        }
        for path in (
            "/v2/models/iris-classifier/infer",
            "/v2/models/iris-classifier/versions/1/infer",
        ):
            answer = httpx.post(srv.url + path, json=request)
            assert answer.status_code == 200, answer.text
            body = answer.json()
            assert body["id"] == "req-7" and body["model_version"] == "1"
            out = {o["name"]: o for o in body["outputs"]}
            assert out["label"]["data"] == labels and out["label"]["datatype"] == "BYTES"
            assert out["probabilities"]["shape"] == [3, 3]
            assert np.allclose(np.reshape(out["probabilities"]["data"], (3, 3)), proba, atol=1e-6)
        flat = {
            "inputs": [{"name": "input", "shape": [3, 4], "datatype": "FP32", "data": sum(x, [])}],
            "outputs": [{"name": "label"}],
        }
        body = httpx.post(f"{srv.url}/v2/models/iris-classifier/infer", json=flat).json()
        assert [o["name"] for o in body["outputs"]] == ["label"]
        missing = httpx.get(f"{srv.url}/v2/models/other-model")
        assert missing.status_code == 404 and "not served here" in missing.json()["error"]
        # The scoring routes are called straight from the server (ServingApp); another method
        # on their paths, and the paths around them, still get FastAPI's JSON answers.
        wrong_method = httpx.get(f"{srv.url}/score")
        assert wrong_method.status_code == 405 and "error" in wrong_method.json()
        unknown = httpx.post(f"{srv.url}/v2/models/iris-classifier/versions/9/infer", json=request)
        assert unknown.status_code == 404 and "error" in unknown.json()
        beyond = httpx.post(f"{srv.url}/score/more", json={"inputs": x})
        assert beyond.status_code == 404 and "error" in beyond.json()


def test_tritonclient_speaks_to_it(packaged: Packaged, tmp_path: Path) -> None:
    """A v2 client nobody here wrote: NVIDIA's tritonclient[http], JSON and binary tensors."""
    import tritonclient.http as triton

    x = np.asarray(rows(packaged, 4), np.float32)
    labels, proba = expected_onnx(packaged.v1, x.tolist())
    with serving("--model-dir", str(packaged.v1), cwd=tmp_path) as srv:
        client = triton.InferenceServerClient(url=srv.url.removeprefix("http://"))
        assert client.is_server_live() and client.is_server_ready()
        assert client.is_model_ready("iris-classifier")
        meta = client.get_model_metadata("iris-classifier")
        assert meta["platform"] == "onnxruntime_onnx"
        for binary in (False, True):
            tensor = triton.InferInput("input", list(x.shape), "FP32")
            tensor.set_data_from_numpy(x, binary_data=binary)
            result = client.infer(
                "iris-classifier",
                [tensor],
                outputs=[
                    triton.InferRequestedOutput("label", binary_data=False),
                    triton.InferRequestedOutput("probabilities", binary_data=False),
                ],
            )
            got = result.as_numpy("probabilities")
            assert got is not None and np.allclose(got, proba, atol=1e-6)
            got_labels = result.as_numpy("label")
            assert got_labels is not None
            assert [v.decode() if isinstance(v, bytes) else str(v) for v in got_labels] == labels
        client.close()


def test_weighted_routing_pinning_and_a_live_split_change(
    packaged: Packaged, tmp_path: Path
) -> None:
    x = {"inputs": rows(packaged, 1)}
    args = ("--model-dir", f"{packaged.v1}=90", "--model-dir", f"{packaged.v2}=10")
    with serving(*args, cwd=tmp_path) as srv, httpx.Client(base_url=srv.url) as client:
        n = 2000
        seen = Counter(client.post("/score", json=x).json()["model_version"] for _ in range(n))
        # Binomial(2000, 0.1): mean 200, sd 13.4; 5 sd either side is a false alarm 1 in 1.7M.
        assert set(seen) == {"1", "2"} and 133 <= seen["2"] <= 267, seen

        pinned = client.post("/score", json=x, headers={"x-model-version": "2"})
        assert pinned.json()["model_version"] == "2"
        unknown = client.post("/score", json=x, headers={"x-model-version": "9"})
        assert unknown.status_code == 404 and "not served here" in unknown.json()["error"]

        assert client.put("/admin/traffic", json={"weights": {"2": 1}}).status_code == 401
        wrong = {"Authorization": "Bearer nope"}
        assert (
            client.put("/admin/traffic", json={"weights": {"2": 1}}, headers=wrong).status_code
            == 401
        )
        bad = client.put("/admin/traffic", json={"weights": {"3": 1}}, headers=ADMIN)
        assert bad.status_code == 422 and "not loaded" in bad.json()["error"]
        zero = client.put("/admin/traffic", json={"weights": {"1": 0}}, headers=ADMIN)
        assert zero.status_code == 422
        for path in ("/" + "x" * 5000, "/" + "x" * 300 + "/y", "a\0b", str(tmp_path / "none")):
            refused = client.post("/admin/models", json={"path": path}, headers=ADMIN)
            assert refused.status_code == 422 and refused.json()["error"], (path[:20], refused.text)
        assert client.get("/admin/traffic", headers=ADMIN).json()["shares"] == {"1": 0.9, "2": 0.1}

        moved = client.put("/admin/traffic", json={"weights": {"1": 0, "2": 100}}, headers=ADMIN)
        assert moved.status_code == 200 and moved.json()["shares"] == {"1": 0.0, "2": 1.0}
        after = Counter(client.post("/score", json=x).json()["model_version"] for _ in range(200))
        assert after == {"2": 200}
        metrics = client.get("/metrics").text
        assert 'mlops_traffic_weight{model="iris-classifier",version="2"} 1.0' in metrics


def test_metrics_count_requests_errors_and_latency(packaged: Packaged, tmp_path: Path) -> None:
    with serving("--model-dir", str(packaged.v1), cwd=tmp_path) as srv:
        for _ in range(7):
            httpx.post(f"{srv.url}/score", json={"inputs": rows(packaged, 2)})
        for _ in range(3):
            httpx.post(f"{srv.url}/score", content=b"{not json")
        text = httpx.get(f"{srv.url}/metrics").text
        ok = 'endpoint="score",model="iris-classifier",version="1"'
        assert f'mlops_requests_total{{code="200",{ok}}} 7.0' in text
        assert 'mlops_request_errors_total{code="400",endpoint="score"' in text
        assert f"mlops_request_duration_seconds_count{{{ok}}} 7.0" in text
        assert 'mlops_rows_scored_total{model="iris-classifier",version="1"} 14.0' in text
        srv.stop()
        access = [line for line in srv.log().splitlines() if line.startswith('{"ts"')]
        assert len(access) == 10 and '"status":400' in access[-1] and '"version":"1"' in access[0]


def test_input_log_written_batched_and_readable(packaged: Packaged, tmp_path: Path) -> None:
    project = project_with(
        packaged,
        tmp_path,
        "monitor: {collect: true, flush_rows: 8, flush_seconds: 0.2, rotate_mb: 0.002}",
    )
    sent = rows(packaged, 30)
    with serving("--model-dir", str(packaged.v1), "-c", str(project), cwd=project) as srv:
        for i in range(0, 30, 3):
            answer = httpx.post(f"{srv.url}/score", json={"inputs": sent[i : i + 3]})
            assert answer.status_code == 200
        assert srv.stop() in (0, -signal.SIGTERM)  # uvicorn re-raises the signal it handled
        assert "Application shutdown complete" in srv.log()
    folder = project / ".mlops" / "inputs"
    assert not list(folder.glob("*.open")), "shutdown finishes the open segment"
    assert len(list(folder.glob("*.jsonl"))) > 1, "2 KB segments rotate"
    records = list(read_records(folder))
    assert [[r["inputs"][c] for c in packaged.test_rows.columns] for r in records] == sent
    assert {r["version"] for r in records} == {"1"} and all(r["prediction"] for r in records)
    assert len({r["request_id"] for r in records}) == 10


def test_input_log_as_parquet(packaged: Packaged, tmp_path: Path) -> None:
    project = project_with(
        packaged, tmp_path, "monitor: {collect: true, format: parquet, flush_seconds: 0.1}"
    )
    with serving("--model-dir", str(packaged.v1), "-c", str(project), cwd=project) as srv:
        httpx.post(f"{srv.url}/score", json={"inputs": rows(packaged, 4)})
    (parquet,) = (project / ".mlops" / "inputs").glob("*.parquet")
    records = list(read_records(parquet.parent))
    assert len(records) == 4 and records[0]["inputs"]["sepal_length"] == rows(packaged, 1)[0][0]


def test_killed_server_loses_at_most_the_last_batch(packaged: Packaged, tmp_path: Path) -> None:
    project = project_with(
        packaged, tmp_path, "monitor: {collect: true, flush_rows: 1, flush_seconds: 0.05}"
    )
    args = ("--model-dir", str(packaged.v1), "-c", str(project))
    with serving(*args, cwd=project) as srv:
        for _ in range(20):
            httpx.post(f"{srv.url}/score", json={"inputs": rows(packaged, 1)})
        time.sleep(0.5)  # past flush_seconds: every batch is on disk
        srv.stop(signal.SIGKILL)
    folder = project / ".mlops" / "inputs"
    assert list(folder.glob("*.open")), "a killed process leaves its segment open"
    with serving(*args, cwd=project):  # the next logger recovers it
        pass
    assert not list(folder.glob("*.open"))
    assert len(list(read_records(folder))) == 20


def test_bigger_than_the_limits_is_413(packaged: Packaged, tmp_path: Path) -> None:
    project = project_with(
        packaged, tmp_path, "serve: {max_payload_bytes: 4096, max_batch_rows: 50}"
    )
    with serving("--model-dir", str(packaged.v1), "-c", str(project), cwd=project) as srv:
        big = httpx.post(f"{srv.url}/score", content=b"[" + b"1," * 5000 + b"1]")
        assert big.status_code == 413 and "4096-byte limit" in big.json()["error"]
        many = httpx.post(f"{srv.url}/score", json={"inputs": [[1, 2, 3, 4]] * 51})
        assert many.status_code == 413 and "limit is 50" in many.json()["error"]

        def chunks() -> Any:
            for _ in range(10):
                yield b" " * 1000

        streamed = httpx.post(f"{srv.url}/score", content=chunks())  # no Content-Length
        assert streamed.status_code == 413
        assert httpx.get(f"{srv.url}/v2/health/ready").status_code == 200


def test_graceful_shutdown_finishes_in_flight_requests(packaged: Packaged, tmp_path: Path) -> None:
    body = json.dumps({"inputs": rows(packaged, 40)}).encode()

    def slowly() -> Iterator[bytes]:  # an upload still arriving when the signal comes
        for i in range(0, len(body), len(body) // 8):
            time.sleep(0.1)
            yield body[i : i + len(body) // 8]

    with serving("--model-dir", str(packaged.v2), cwd=tmp_path) as srv:
        with concurrent.futures.ThreadPoolExecutor(3) as pool:
            futures = [
                pool.submit(httpx.post, f"{srv.url}/score", content=slowly(), timeout=30)
                for _ in range(3)
            ]
            time.sleep(0.3)
            srv.process.send_signal(signal.SIGTERM)
            answers = [f.result() for f in futures]
        assert srv.process.wait(20) in (0, -signal.SIGTERM)
    assert [a.status_code for a in answers] == [200] * 3
    assert all(len(a.json()["predictions"]) == 40 for a in answers)
    lines = srv.log().splitlines()
    stopping = next(i for i, line in enumerate(lines) if "Shutting down" in line)
    assert sum('"status":200' in line for line in lines[stopping:]) == 3


def test_two_workers_share_the_split_and_the_metrics(packaged: Packaged, tmp_path: Path) -> None:
    x = {"inputs": rows(packaged, 1)}
    args = ("--model-dir", f"{packaged.v1}=1", "--model-dir", f"{packaged.v2}=0")
    with serving(*args, "--workers", "2", cwd=tmp_path) as srv:
        moved = httpx.put(f"{srv.url}/admin/traffic", json={"weights": {"2": 1}}, headers=ADMIN)
        assert moved.status_code == 200
        time.sleep(0.5)  # workers re-read the split file at most every 0.2 s
        seen: Counter[str] = Counter()
        for _ in range(60):  # fresh connections land on both workers
            seen[httpx.post(f"{srv.url}/score", json=x).json()["model_version"]] += 1
        assert seen == {"2": 60}
        text = httpx.get(f"{srv.url}/metrics").text
        labels = 'code="200",endpoint="score",model="iris-classifier",version="2"'
        assert f"mlops_requests_total{{{labels}}} 60.0" in text
        pids = {
            line.split("[")[1].split("]")[0]
            for line in srv.log().splitlines()
            if "Started server process" in line
        }
        assert len(pids) == 2
        srv.stop()  # both workers write out their access lines
    access = [line for line in srv.log().splitlines() if line.startswith('{"ts"')]
    assert len(access) == 60  # whole lines, none split by the other worker's writes
    assert all(json.loads(line)["path"] == "/score" for line in access)


def test_serves_a_registry_version_and_refuses_altered_files(
    packaged: Packaged, tmp_path: Path
) -> None:
    args = (
        "-c",
        str(packaged.project),
        "--version",
        "@candidate",
        "--state-dir",
        str(tmp_path / "state"),
    )
    with serving(*args, cwd=tmp_path) as srv:
        answer = httpx.post(f"{srv.url}/score", json={"inputs": rows(packaged, 1)})
        assert answer.json()["model_version"] == "2"
    tampered = tmp_path / "tampered"
    shutil.copytree(packaged.v1, tampered)
    (tampered / "model.onnx").write_bytes((tampered / "model.onnx").read_bytes()[:-3] + b"abc")
    import subprocess
    import sys

    def serve_once(folder: Path) -> subprocess.CompletedProcess[str]:
        """`mlops-ci serve` on ``folder``, expected to refuse it and exit."""
        return subprocess.run(
            [sys.executable, "-m", "mlops_ci", "serve", "--model-dir", str(folder)],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            timeout=60,
        )

    done = serve_once(tampered)
    assert done.returncode == 2
    assert "sha256 mismatch (model.onnx changed or missing)" in done.stderr
    assert len(done.stderr.strip().splitlines()) <= 2
    # A swapped model that is itself a valid ONNX model (v2's forest in v1's folder) is refused
    # just the same: the check is the manifest's digest, not whether the file loads.
    swapped = tmp_path / "swapped"
    shutil.copytree(packaged.v1, swapped)
    shutil.copyfile(packaged.v2 / "model.onnx", swapped / "model.onnx")
    again = serve_once(swapped)
    assert again.returncode == 2 and "sha256 mismatch (model.onnx" in again.stderr


@pytest.mark.parametrize("durable", [False, True])
def test_kill_9_under_load_loses_what_the_input_log_promises_and_no_more(
    packaged: Packaged, tmp_path: Path, durable: bool
) -> None:
    """Clients score for two seconds, then the server is killed with SIGKILL. Durable: every
    request answered 200 is in the log. Default: the rows missing were all answered in the
    last flush_seconds before the kill (the stated bound)."""
    import threading

    from mlops_ci.serve.inputlog import recover_orphans

    flush = 1.0
    project = project_with(
        packaged,
        tmp_path,
        f"monitor: {{collect: true, log_dir: logs, flush_seconds: {flush}, flush_rows: 100000, "
        f"durable: {str(durable).lower()}}}",
    )
    answered: dict[str, float] = {}
    stop = threading.Event()
    with serving("-c", str(project), "--model-dir", str(packaged.v1), cwd=project) as srv:

        def client(k: int) -> None:
            with httpx.Client(base_url=srv.url, timeout=5) as http:
                for i in range(100_000):
                    if stop.is_set():
                        return
                    rid = f"c{k}-{i}"
                    try:
                        answer = http.post(
                            "/score",
                            json={"inputs": rows(packaged, 1)},
                            headers={"x-request-id": rid},
                        )
                    except httpx.HTTPError:
                        continue
                    if answer.status_code == 200:
                        answered[rid] = time.monotonic()

        threads = [threading.Thread(target=client, args=(k,), daemon=True) for k in range(3)]
        for thread in threads:
            thread.start()
        time.sleep(2.0)
        srv.process.send_signal(signal.SIGKILL)
        killed_at = time.monotonic()
        srv.process.wait(10)
        stop.set()
        for thread in threads:
            thread.join(10)
    recover_orphans(project / "logs", "jsonl")
    logged = {r["request_id"] for r in read_records(project / "logs")}
    missing = set(answered) - logged
    assert len(answered) > 200, len(answered)
    if durable:
        assert not missing, f"{len(missing)} of {len(answered)} answered rows lost"
    else:
        late = {r: round(killed_at - answered[r], 3) for r in missing}
        assert all(age <= flush + 0.25 for age in late.values()), sorted(late.values())[-5:]
