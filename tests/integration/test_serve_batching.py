"""Adaptive batching in a real `mlops-ci serve`: the same requests, sent one at a time (each
scored alone, as with batching off) and all at once (stacked into shared model calls), get
the same answers — /score, v2 JSON and the v2 binary extension, a traffic split over two
workers, a native model whose refusal is its own request's, the input log and a shadow."""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from mlops_ci.serve.inputlog import read_records
from tests.integration.conftest import Packaged
from tests.integration.test_serve_runner import package_folder
from tests.support.batching import Request, batched_calls, post_all
from tests.support.serve_helpers import serving

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]
INFER = "/v2/models/iris-classifier/infer"


def v2_binary(row: list[float]) -> bytes:
    tensor = {"name": "input", "shape": [1, 4], "datatype": "FP32"}
    tensor["parameters"] = {"binary_data_size": 16}
    header = json.dumps({"inputs": [tensor]}).encode()
    return header + struct.pack("<4f", *row)


def mixed_requests(rows: list[list[float]], n: int) -> list[Request]:
    """/score, v2 JSON, v2 binary and a bad /score body (text for a number) in turn, each
    with its own request id."""
    out: list[Request] = []
    for i in range(n):
        row, ids = rows[i % len(rows)], {"x-request-id": f"r{i}"}
        kind = i % 4
        if kind == 0:
            out.append(("/score", {"inputs": [row]}, ids))
        elif kind == 1:
            tensor = {"name": "input", "shape": [1, 4], "datatype": "FP64", "data": row}
            out.append((INFER, {"inputs": [tensor]}, ids))
        elif kind == 2:
            header = len(v2_binary(row)) - 16
            binary = {
                **ids,
                "content-type": "application/octet-stream",
                "inference-header-content-length": str(header),
            }
            out.append((INFER, v2_binary(row), binary))
        else:
            out.append(("/score", {"inputs": [[row[0], "wide", row[2], row[3]]]}, ids))
    return out


def pinned(requests: list[Request], version: str) -> list[Request]:
    return [(p, b, {**h, "x-model-version": version}) for p, b, h in requests]


def test_a_split_over_two_workers_answers_batched_as_alone_on_every_endpoint(
    packaged: Packaged, tmp_path: Path
) -> None:
    rows = packaged.test_rows.to_numpy().tolist()
    requests = mixed_requests(rows, 160)
    logs = tmp_path / "logs"
    args = ["--model-dir", f"{packaged.v1}=50", "--model-dir", f"{packaged.v2}=50"]
    args += ["--workers", "2", "--max-batch-size", "8", "--collect", "--log-dir", str(logs)]
    with serving(*args, cwd=tmp_path) as srv:
        alone = {v: post_all(srv.url, pinned(requests, v), at_once=False) for v in ("1", "2")}
        before = {v: batched_calls(srv.url, v) for v in ("1", "2")}
        together = post_all(srv.url, requests, at_once=True)
        after = {v: batched_calls(srv.url, v) for v in ("1", "2")}
        assert "Traceback" not in srv.log()
    seen = set()
    for i, (status, body, version) in enumerate(together):
        if i % 4 == 3:
            assert status == 422 and "must be a number" in body["error"], body
            continue
        assert status == 200 and version in ("1", "2"), (i, body)
        seen.add(version)
        want_status, want, want_version = alone[version][i]
        assert (want_status, want_version) == (200, version)
        assert body == want, (i, version, body, want)  # bit for bit: the same JSON
    assert seen == {"1", "2"}
    calls = sum(after[v][0] - before[v][0] for v in after)
    batched_rows = sum(after[v][1] - before[v][1] for v in after)
    assert batched_rows == 120 and calls < 100, (calls, batched_rows)  # shared calls
    # The input log holds every answered request once, under its own id, with its answer.
    logged = [r for r in read_records(logs) if r["request_id"].startswith("r")]
    ids = [r["request_id"] for r in logged]
    assert len(ids) == 3 * 120 and len(set(ids)) == 120  # the alone passes too, once each


def test_a_native_model_batches_and_a_value_it_refuses_fails_its_own_request(
    tmp_path: Path,
) -> None:
    from sklearn.compose import make_column_transformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder

    rng = np.random.default_rng(3)
    frame = pd.DataFrame({"x0": rng.normal(size=300), "colour": rng.choice(["red", "blue"], 300)})
    target = (frame["x0"] + (frame["colour"] == "red") > 0.5).map({True: "yes", False: "no"})
    model = make_pipeline(
        make_column_transformer(
            (OneHotEncoder(handle_unknown="error"), ["colour"]), remainder="passthrough"
        ),
        LogisticRegression(),
    ).fit(frame, target)
    schema = [{"name": "x0", "kind": "number"}, {"name": "colour", "kind": "string"}]
    folder = package_folder(tmp_path / "native", model, schema)
    requests: list[Request] = []
    for i in range(90):
        colour = "purple" if i % 5 == 2 else ("red", "blue")[i % 2]  # purple: never seen
        record = {"x0": round(float(rng.normal()), 4), "colour": colour}
        requests.append(("/score", {"inputs": [record]}, {"x-request-id": f"n{i}"}))
    with serving("--model-dir", str(folder), "--max-batch-size", "16", cwd=tmp_path) as srv:
        alone = post_all(srv.url, requests, at_once=False)
        before = batched_calls(srv.url, "1")
        together = post_all(srv.url, requests, at_once=True)
        calls, rows = (a - b for a, b in zip(batched_calls(srv.url, "1"), before, strict=True))
        assert "Traceback" not in srv.log()
    for i, ((status, want, _), (status2, body, _)) in enumerate(zip(alone, together, strict=True)):
        if i % 5 == 2:
            assert status == status2 == 422 and "cannot score these values" in body["error"]
            continue
        assert status == status2 == 200 and body["predictions"] == want["predictions"]
        np.testing.assert_allclose(body["probabilities"], want["probabilities"], atol=1e-12)
    # 72 good rows answered in shared calls: a call holding a purple row was cut in halves.
    assert rows == 72 and calls < 60, (calls, rows)


def test_a_shadow_logs_every_batched_request(packaged: Packaged, tmp_path: Path) -> None:
    rows = packaged.test_rows.to_numpy().tolist()
    requests: list[Request] = [
        ("/score", {"inputs": [rows[i % len(rows)]]}, {"x-request-id": f"s{i}"}) for i in range(60)
    ]
    logs = tmp_path / "logs"
    args = ["--model-dir", str(packaged.v1), "--shadow", str(packaged.v2), "--max-batch-size", "8"]
    with serving(*args, "--collect", "--log-dir", str(logs), cwd=tmp_path) as srv:
        together = post_all(srv.url, requests, at_once=True)
        calls, scored = batched_calls(srv.url, "1")
    assert [status for status, _, _ in together] == [200] * 60
    assert calls < scored == 60  # batched
    records: list[dict[str, Any]] = list(read_records(logs))
    primary = {r["request_id"] for r in records if not r.get("shadow")}
    shadow = {r["request_id"] for r in records if r.get("shadow")}
    want = {f"s{i}" for i in range(60)}
    assert primary == want and shadow == want, (want - primary, want - shadow)
