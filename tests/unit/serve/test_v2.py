"""v2 bodies built from what a worker holds: server readiness with the input log's state,
the infer response."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import numpy as np
import orjson
import pytest

from mlops_ci.serve.bodies import json_response
from mlops_ci.serve.inputlog import InputLog, LogSettings
from mlops_ci.serve.model import Prediction
from mlops_ci.serve.payload import InferRequest, PayloadError
from mlops_ci.serve.service import Service
from mlops_ci.serve.v2 import infer_response, server_readiness


def test_ready_stays_true_and_says_what_the_input_log_could_not_write(tmp_path: Path) -> None:
    """KServe's client reads ``ready`` of a 200 (and Triton's only the 200): the body keeps it
    true, the input log's state beside it."""
    assert server_readiness(cast(Service, SimpleNamespace(input_log=None))) == {"ready": True}
    log = InputLog(LogSettings(tmp_path, "m", ("a",)))
    log._dropped(600, OSError(28, "No space left on device"))  # what a failed write records
    body: dict[str, Any] = server_readiness(cast(Service, SimpleNamespace(input_log=log)))
    assert body["ready"] is True
    state = body["input_log"]
    assert state["state"] == "failing" and state["rows_dropped"] == 600
    assert state["last_error"] == "OSError: [Errno 28] No space left on device"


@pytest.mark.timeout(30)
def test_infer_response_writes_float32_scores_and_the_outputs_asked_for() -> None:
    """Scores are the FP32 tensor they are declared (float64 probabilities rounded to float32,
    written as doubles); outputs come in the order asked for; classes and id beside them."""
    scores = np.array([[0.1, 0.9], [0.3333333333333333, 0.6666666666666666]])
    prediction = Prediction(np.array(["a", "b"], dtype=object), scores)
    everything = InferRequest(np.zeros((2, 1)), "r-1", ())
    body = orjson.loads(json_response(infer_response("m", "3", ("a", "b"), everything,
                                                     prediction)).body)  # fmt: skip
    assert body == {
        "model_name": "m",
        "model_version": "3",
        "outputs": [
            {"name": "label", "shape": [2], "datatype": "BYTES", "data": ["a", "b"]},
            {
                "name": "probabilities",
                "shape": [2, 2],
                "datatype": "FP32",
                "data": [float(np.float32(v)) for v in scores.ravel()],
            },
        ],
        "parameters": {"classes": ["a", "b"]},
        "id": "r-1",
    }
    asked = InferRequest(np.zeros((2, 1)), None, ("probabilities", "label"))
    data = infer_response("m", "3", (), asked, prediction)
    assert [t["name"] for t in data["outputs"]] == ["probabilities", "label"]
    assert "parameters" not in data and "id" not in data
    with pytest.raises(PayloadError, match="output 'x' does not exist") as caught:
        infer_response("m", "3", (), InferRequest(np.zeros((2, 1)), None, ("x",)), prediction)
    assert caught.value.status == 400


@pytest.mark.timeout(30)
def test_infer_response_of_a_regressor_and_of_a_classifier_without_probabilities() -> None:
    request = InferRequest(np.zeros((2, 1)), None, ())
    values = infer_response("m", "3", (), request, Prediction(None, np.array([[1.5], [2]])))
    assert values["outputs"] == [
        {"name": "variable", "shape": [2, 1], "datatype": "FP32", "data": [1.5, 2.0]}
    ]
    labels_only = Prediction(np.array([1, 0]), np.zeros((2, 0)))
    data = infer_response("m", "3", ("0", "1"), request, labels_only)
    assert data["outputs"] == [{"name": "label", "shape": [2], "datatype": "INT64", "data": [1, 0]}]
    assert "parameters" not in data  # classes go with the probabilities
