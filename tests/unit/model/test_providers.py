"""The execution provider an ONNX session runs on: what was asked, what onnxruntime kept
(no GPU here: it falls back to CPU, and that is said), and provider names checked with a
did-you-mean."""

from __future__ import annotations

import onnxruntime as ort
import pytest

from mlops_ci.model.providers import CPU, open_session, unknown
from tests.support.tensor_models import text_graph

pytestmark = pytest.mark.timeout(60)


def test_cpu_asked_is_cpu_run() -> None:
    session, ran = open_session(text_graph(), ort.SessionOptions(), (CPU,))
    assert session.get_providers() == [CPU]
    assert ran.provider == CPU and not ran.fell_back and ran.describe() == CPU


@pytest.mark.skipif(
    "CUDAExecutionProvider" in ort.get_available_providers(), reason="this machine has CUDA"
)
def test_a_gpu_asked_for_where_there_is_none_falls_back_to_cpu_and_says_so(
    recwarn: pytest.WarningsRecorder,
) -> None:
    wanted = ("CUDAExecutionProvider", "OpenVINOExecutionProvider")
    session, ran = open_session(text_graph(), ort.SessionOptions(), wanted)
    assert session.get_providers() == [CPU]  # and it scores
    assert ran.requested == wanted and ran.provider == CPU and ran.fell_back
    have = ", ".join(ort.get_available_providers())
    assert ran.describe() == f"{CPU} (asked for CUDAExecutionProvider: this onnxruntime has {have})"
    assert not [w for w in recwarn if "not in available provider names" in str(w.message)]


def test_names_that_are_not_onnxruntimes_are_named_with_a_guess() -> None:
    assert unknown(["CPUExecutionProvider", "TensorrtExecutionProvider"]) == []
    assert unknown(["CudaExecutionProvider", "GPU"]) == [
        "'CudaExecutionProvider' is not an onnxruntime execution provider; did you mean "
        "'CUDAExecutionProvider'?",
        "'GPU' is not an onnxruntime execution provider",
    ]
