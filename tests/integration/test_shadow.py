"""A shadow version in a real `mlops-ci serve` (uvicorn, two workers): clients get the primary's
answers only, the input log holds both versions' outputs under one request id and row, and the
admin API changes the shadow live on every worker."""

from __future__ import annotations

import json
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from mlops_ci.serve.inputlog import read_records
from tests.integration.conftest import Packaged
from tests.integration.test_serve import expected_onnx
from tests.support.serve_helpers import ADMIN_TOKEN, serving

pytestmark = pytest.mark.slow
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def _metric(text: str, name: str, version: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") and f'version="{version}"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def _wait_for(check: Any, seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "not within the time"
        time.sleep(0.1)


@pytest.mark.timeout(240)
def test_a_shadow_scores_every_request_unseen_and_logs_it_beside_the_primary(
    packaged: Packaged, tmp_path: Path
) -> None:
    x = packaged.test_rows.to_numpy().tolist()
    labels_v1, proba_v1 = expected_onnx(packaged.v1, x)
    labels_v2, proba_v2 = expected_onnx(packaged.v2, x)
    assert labels_v1 != labels_v2 or not np.allclose(proba_v1, proba_v2)  # two answers to tell
    log_dir = tmp_path / "inputs"
    args = ["--model-dir", str(packaged.v1), "--shadow", f"{packaged.v2}", "--workers", "2"]
    sent: dict[str, list[list[float]]] = {}
    with (
        serving(*args, "--collect", "--log-dir", str(log_dir), cwd=tmp_path) as srv,
        httpx.Client(base_url=srv.url, timeout=30) as client,
    ):
        for i in range(30):
            rows = x[i % len(x) : i % len(x) + 1 + i % 3]
            rid = f"req-{i}"
            if i % 2:
                answer = client.post("/score", json={"inputs": rows}, headers={"x-request-id": rid})
                assert answer.status_code == 200, answer.text
                start = x.index(rows[0])
                assert answer.json()["predictions"] == labels_v1[start : start + len(rows)]
            else:
                body = {
                        "id": rid,
                        "inputs": [
                            {"name": "input", "shape": [len(rows), 4], "datatype": "FP32",
                             "data": [v for r in rows for v in r]}
                        ],
                    }  # fmt: skip
                answer = client.post("/v2/models/iris-classifier/infer", json=body)
                assert answer.status_code == 200, answer.text
                assert answer.json()["model_version"] == "1"
            assert answer.headers["x-model-version"] == "1"
            sent[rid] = rows
        metrics = lambda: client.get("/metrics").text  # noqa: E731
        rows_sent = sum(len(r) for r in sent.values())
        _wait_for(lambda: _metric(metrics(), "mlops_shadow_rows_total", "2") == rows_sent)
        assert _metric(metrics(), "mlops_shadow_dropped_total", "2") == 0

        state = client.get("/admin/shadow", headers=ADMIN).json()["shadow"]
        assert state["version"] == "2" and state["percent"] == 100.0
        refused = client.delete("/admin/models/2", headers=ADMIN)
        assert refused.status_code == 409 and "shadow" in refused.json()["error"]
        assert client.delete("/admin/shadow", headers=ADMIN).json()["shadow"] is None
        time.sleep(0.5)  # the other worker reads the shared state within 0.2 s
        for i in range(10):  # on fresh connections: both workers answer some
            httpx.post(
                f"{srv.url}/score",
                json={"inputs": x[:1]},
                headers={"x-request-id": f"after-{i}"},
            )
        bad = client.put("/admin/shadow", headers=ADMIN, json={"version": "7"})
        assert bad.status_code == 422 and "not loaded" in bad.json()["error"]
        time.sleep(1.5)
        assert _metric(metrics(), "mlops_shadow_rows_total", "2") == rows_sent

    records = list(read_records(log_dir))
    by_side: dict[bool, dict[tuple[str, int], dict[str, Any]]] = defaultdict(dict)
    for record in records:
        key = (record["request_id"], record["row"])
        assert key not in by_side[bool(record.get("shadow"))], f"{key} logged twice"
        by_side[bool(record.get("shadow"))][key] = record
    primary, shadow = by_side[False], by_side[True]
    expected_keys = {(rid, j) for rid, rows in sent.items() for j in range(len(rows))}
    assert set(shadow) == expected_keys  # every row of every shadowed request, nothing else
    assert expected_keys <= set(primary) and len(primary) == len(expected_keys) + 10
    for (rid, j), record in shadow.items():
        assert record["version"] == "2" and primary[rid, j]["version"] == "1"
        assert record["inputs"] == primary[rid, j]["inputs"]
        row = x.index(sent[rid][j])
        assert record["prediction"] == labels_v2[row]
        assert np.allclose(record["scores"], proba_v2[row], atol=1e-6)
        assert primary[rid, j]["prediction"] == labels_v1[row]


@pytest.mark.timeout(300)
def test_quality_judges_a_real_shadow_on_labelled_live_requests(
    packaged: Packaged, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both versions served by a real `mlops-ci serve --shadow`; labels arrive later. The truth
    here is v1's answer (so v2 is worse exactly where the two disagree): quality's figures are
    the offline metrics of the same rows, and the paired bootstrap refuses v2."""
    from mlops_ci.metrics import Encoded, score
    from tests.integration.test_serve import project_with
    from tests.support.helpers import run_cli

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    low = packaged.test_rows.min().to_numpy()
    high = packaged.test_rows.max().to_numpy()
    rng = np.random.default_rng(11)
    sent: dict[tuple[str, int], list[float]] = {}
    log_dir = tmp_path / "inputs"
    args = ["--model-dir", str(packaged.v1), "--shadow", f"{packaged.v2}=100"]
    with (
        serving(*args, "--collect", "--log-dir", str(log_dir), cwd=tmp_path) as srv,
        httpx.Client(base_url=srv.url, timeout=30) as client,
    ):
        for i in range(200):
            rows = rng.uniform(low, high, size=(int(rng.integers(1, 4)), 4)).round(2).tolist()
            answer = client.post("/score", json={"inputs": rows}, headers={"x-request-id": f"q{i}"})
            assert answer.status_code == 200 and answer.headers["x-model-version"] == "1"
            sent |= {(f"q{i}", j): row for j, row in enumerate(rows)}
    keys = sorted(sent)
    x = [sent[k] for k in keys]
    truth, _ = expected_onnx(packaged.v1, x)
    v2_labels, _ = expected_onnx(packaged.v2, x)
    disagree = sum(a != b for a, b in zip(truth, v2_labels, strict=True))
    assert disagree >= 20, "the two versions must differ on enough rows to tell them apart"
    labels = tmp_path / "labels.csv"
    labels.write_text(
        "request_id,row,species\n"
        + "".join(f"{r},{j},{t}\n" for (r, j), t in zip(keys, truth, strict=True))
    )
    project = project_with(packaged, tmp_path, "")
    code = run_cli(
        "quality", "-c", str(project), "--labels", str(labels), "--current", str(log_dir)
    )
    assert code == 0  # production (v1) holds the gate's bounds on its own answers
    record = json.loads((project / ".mlops" / "quality.json").read_text())
    for version, predicted in (("1", truth), ("2", v2_labels)):
        enc, (pred,) = Encoded.of("classification", np.array(truth), np.array(predicted))
        live = record["versions"][version]
        assert live["rows"] == len(keys)
        for metric in ("f1_macro", "accuracy"):
            assert abs(live["metrics"][metric] - score(metric, enc, pred)) <= 1e-9
    comparison = record["comparison"]
    assert (comparison["production"], comparison["candidate"]) == ("1", "2")
    assert comparison["rows"] == len(keys) and comparison["verdict"] == "fail"
    assert comparison["significance"]["ci_high"] < 0  # significantly worse, by the interval
