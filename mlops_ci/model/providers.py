"""The execution provider an ONNX model runs on (issue 43): CPU, a GPU (CUDA, TensorRT, ROCm,
DirectML), an NPU or an FPGA (OpenVINO, Vitis AI), named as onnxruntime names them.

onnxruntime falls back silently: asked for ``CUDAExecutionProvider`` where its build or the
machine has no GPU, it warns once on stderr and runs on CPU. A deployment that believes it is
on a GPU and is not is a latency incident waiting, so every session is opened here: what was
asked, what the session really runs (``get_providers()``), and the fallback said in words that
the profile, the cost gate, the version's tags and the server's log repeat.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

CPU = "CPUExecutionProvider"
# onnxruntime's provider names (its docs' "Execution Providers" list), for did-you-mean.
KNOWN = (
    CPU,
    "CUDAExecutionProvider",
    "TensorrtExecutionProvider",
    "ROCMExecutionProvider",
    "MIGraphXExecutionProvider",
    "DmlExecutionProvider",
    "OpenVINOExecutionProvider",
    "CoreMLExecutionProvider",
    "QNNExecutionProvider",
    "VitisAIExecutionProvider",
    "CANNExecutionProvider",
    "ArmNNExecutionProvider",
    "ACLExecutionProvider",
    "NnapiExecutionProvider",
    "XnnpackExecutionProvider",
    "WebGpuExecutionProvider",
    "AzureExecutionProvider",
)
GPU = frozenset(
    ("CUDAExecutionProvider", "TensorrtExecutionProvider", "ROCMExecutionProvider",
     "MIGraphXExecutionProvider", "DmlExecutionProvider")
)  # fmt: skip


@dataclass(frozen=True)
class Ran:
    """What a session was asked to run on and what it runs on, best first."""

    requested: tuple[str, ...]
    used: tuple[str, ...]
    available: tuple[str, ...]  # what this onnxruntime build offers

    @property
    def provider(self) -> str:
        """The provider that runs the model (the first the session kept)."""
        return self.used[0] if self.used else CPU

    @property
    def fell_back(self) -> bool:
        return self.provider != self.requested[0]

    def describe(self) -> str:
        """``CPUExecutionProvider``, or what it fell back from and why."""
        if not self.fell_back:
            return self.provider
        wanted = self.requested[0]
        why = (
            f"this onnxruntime has {', '.join(self.available)}"
            if wanted not in self.available
            else "the session could not set it up on this machine"
        )
        return f"{self.provider} (asked for {wanted}: {why})"


def unknown(names: Sequence[str]) -> list[str]:
    """Problems with provider names for ``validate``: one not onnxruntime's, with a guess."""
    problems = []
    for name in names:
        if name in KNOWN:
            continue
        lower = {k.lower(): k for k in KNOWN}
        close = difflib.get_close_matches(name.lower(), lower, n=1, cutoff=0.6)
        guess = f"; did you mean '{lower[close[0]]}'?" if close else ""
        problems.append(f"'{name}' is not an onnxruntime execution provider{guess}")
    return problems


def open_session(model: bytes | str, options: Any, wanted: Sequence[str]) -> tuple[Any, Ran]:
    """An onnxruntime session on the first of ``wanted`` this build offers (CPU last, as
    onnxruntime itself falls back to it), and what it really runs on. Providers the build
    lacks are left out here rather than warned about by onnxruntime on every session."""
    import onnxruntime as ort

    requested = tuple(wanted) or (CPU,)
    available = tuple(ort.get_available_providers())
    asked = [p for p in requested if p in available]
    if CPU not in asked:
        asked.append(CPU)
    session = ort.InferenceSession(model, options, providers=asked)
    return session, Ran(requested, tuple(session.get_providers()), available)
