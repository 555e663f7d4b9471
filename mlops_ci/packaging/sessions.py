"""Opening an onnxruntime session the way package, compare, serve and batch-score all do: the
configured threads and graph optimisation, the external-data refusal, and the execution
provider it really runs on (``model/providers.py``)."""

from __future__ import annotations

from typing import Any

from mlops_ci.model.onnxmodel import refuse_external_data
from mlops_ci.model.providers import CPU, Ran, open_session
from mlops_ci.packaging.convert import OnnxFailed, runtime_reason

GRAPH_LEVELS = {
    "disabled": "ORT_DISABLE_ALL",
    "basic": "ORT_ENABLE_BASIC",
    "extended": "ORT_ENABLE_EXTENDED",
    "all": "ORT_ENABLE_ALL",
}


def session(model: bytes | str, intra_op_threads: int, level: str, quiet: bool = False) -> Any:
    """An onnxruntime CPU session with the configured options; ``quiet``: onnxruntime logs
    nothing of a failure (the caller says it, or falls back)."""
    return open_onnx(model, intra_op_threads, level, (CPU,), quiet)[0]


def open_onnx(
    model: bytes | str,
    intra_op_threads: int,
    level: str,
    providers: tuple[str, ...],
    quiet: bool = False,
) -> tuple[Any, Ran]:
    """A session on the first of ``providers`` onnxruntime can run here (CPU last), with the
    configured options, and what it really runs on (``model/providers.py``)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = intra_op_threads
    options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, GRAPH_LEVELS[level])
    if quiet:
        options.log_severity_level = 4  # fatal only
    refuse_external_data(model, "the ONNX model")
    try:
        return open_session(model, options, providers)
    except Exception as err:  # a corrupt or hand-edited graph, an operator it cannot set up
        raise OnnxFailed(f"the ONNX model cannot be loaded: {runtime_reason(err)}") from None
