"""A shadow version in a real `mlops-ci serve` (uvicorn, two workers): clients get the primary's
answers only, the input log holds both versions' outputs under one request id and row, and the
admin API changes the shadow live on every worker."""

from __future__ import annotations

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
