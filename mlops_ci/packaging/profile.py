"""Profile a model on this machine: single-row latency, batch throughput, peak memory, size.

ONNX (onnxruntime) and the native model are measured in the same run, so the speed-up is a
ratio of figures taken side by side. Peak memory is the max RSS of a separate scoring
process, so this process's own imports do not count: for an ONNX graph (data, not code) a
python child of mlops-ci's own; for a native model, which a training command wrote and which
therefore runs only in the model runner's child, a fresh runner the caller passes in
(:data:`NativeProbe`: packaging cannot start one, the runner imports packaging).
"""

from __future__ import annotations

import math
import os
import platform
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mlops_ci.sandbox import allowed_environment, python_argv

_WARMUP = 20
_BATCH_SECONDS = 0.3  # time budget per batch size and engine

# A scoring process for an ONNX graph: load it, score one batch (the feeds in an .npz, text
# as fixed-width unicode), print its own peak RSS in KiB. VmHWM counts from exec, whereas
# ru_maxrss can still report the forking parent's size.
_MEMORY_PROBE = """
import resource, sys
import numpy as np
import onnxruntime as ort
path, batch = sys.argv[1], sys.argv[2]
with np.load(batch, allow_pickle=False) as saved:
    names = [str(n) for n in saved["names"]]
    feeds = {n: saved[f"arr_{i}"] for i, n in enumerate(names)}
feeds = {n: a.astype(object) if a.dtype.kind == "U" else a for n, a in feeds.items()}
s = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
s.run(None, feeds)
try:
    with open("/proc/self/status") as fh:
        print(next(int(l.split()[1]) for l in fh if l.startswith("VmHWM:")))
except (OSError, StopIteration):
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""

ONNX, NATIVE = "onnx", "native"

# The peak RSS (MiB) of a fresh model runner's child that loads the native model's folder and
# scores the rows (a DataFrame) once: what the caller, which may start a runner, passes in.
NativeProbe = Callable[[Path, Any], float]


@dataclass(frozen=True)
class Probe:
    """What the memory probe loads and scores. ``onnx``: the ONNX file and its feeds (an
    .npz :func:`feeds_file` wrote), in a python child of mlops-ci's own. ``native``: the
    native model's folder (MLflow's sklearn flavor) and the DataFrame ``rows``, measured by
    ``measured_by`` in a fresh model runner's child: never loaded here."""

    kind: str  # onnx | native
    model: Path
    batch: Path | None = None  # onnx: the feeds
    rows: Any = field(default=None, compare=False, repr=False)  # native: the DataFrame
    measured_by: NativeProbe | None = field(default=None, compare=False, repr=False)


def feeds_file(stem: Path, feeds: dict[str, Any]) -> Path:
    """onnxruntime feeds saved for the ONNX memory probe: numpy's .npz, no pickle (the arrays
    by position, their names beside them; text as fixed-width unicode)."""
    path = stem.with_suffix(".feeds.npz")
    names = list(feeds)
    arrays = [
        np.asarray(a, dtype=str) if np.asarray(a).dtype == object else np.asarray(a)
        for a in feeds.values()
    ]
    np.savez(path, *arrays, names=np.asarray(names, dtype=str))
    return path


@dataclass(frozen=True)
class EngineProfile:
    engine: str  # onnxruntime | sklearn
    p50_ms: float
    p95_ms: float
    p99_ms: float
    rows_per_s: dict[int, float]  # batch size -> throughput
    peak_rss_mb: float
    size_bytes: int
    provider: str = ""  # ONNX: the execution provider that ran, and any fallback, in words


@dataclass(frozen=True)
class Recommendation:
    cpu_request: str
    memory_request: str
    memory_limit: str
    why: str


@dataclass(frozen=True)
class Profile:
    serving: EngineProfile  # what the container will run
    native: EngineProfile | None  # beside it when serving is ONNX
    session_options: dict[str, Any]
    recommendation: Recommendation
    machine: dict[str, Any] = field(default_factory=dict)

    def speedup_single_row(self) -> float | None:
        return None if self.native is None else self.native.p50_ms / self.serving.p50_ms

    def speedup_batch(self) -> dict[int, float]:
        if self.native is None:
            return {}
        return {b: r / self.native.rows_per_s[b] for b, r in self.serving.rows_per_s.items()}


def measure(
    engine: str,
    predict: Callable[[Any], Any],
    rows: Callable[[int], Any],
    single_row_runs: int,
    batch_sizes: tuple[int, ...],
    memory: Probe,
    size_bytes: int,
    timed: dict[str, Any] | None = None,
    provider: str = "",
) -> EngineProfile:
    """Time ``predict`` on 1-row inputs and on each batch size; ``rows(n)`` makes an input.
    ``timed``: figures the model runner measured beside the model (``timings``) instead."""
    figures = timed if timed is not None else _timed(predict, rows, single_row_runs, batch_sizes)
    throughput = {int(b): float(v) for b, v in figures["throughput"].items()}
    return EngineProfile(
        engine, float(figures["p50"]), float(figures["p95"]), float(figures["p99"]), throughput,
        peak_rss_mb(memory), size_bytes, provider,
    )  # fmt: skip


def timings(
    predict: Callable[[Any], Any], features: Any, single_row_runs: int, batch_sizes: list[int]
) -> dict[str, Any]:
    """:func:`measure`'s timings of ``predict`` on rows cycled from ``features`` (a
    DataFrame): what the model runner's child measures beside the model."""
    base = features.reset_index(drop=True)

    def rows(n: int) -> Any:
        return base.iloc[np.arange(n) % len(base)].reset_index(drop=True)

    return _timed(predict, rows, single_row_runs, tuple(batch_sizes))


def _timed(
    predict: Callable[[Any], Any],
    rows: Callable[[int], Any],
    single_row_runs: int,
    batch_sizes: tuple[int, ...],
) -> dict[str, Any]:
    one = rows(1)
    for _ in range(_WARMUP):
        predict(one)
    samples = []
    for _ in range(single_row_runs):
        start = time.perf_counter_ns()
        predict(one)
        samples.append((time.perf_counter_ns() - start) / 1e6)
    p50, p95, p99 = (float(v) for v in np.percentile(samples, [50, 95, 99]))
    throughput = {b: _throughput(predict, rows(b), b) for b in batch_sizes}
    return {"p50": p50, "p95": p95, "p99": p99, "throughput": throughput}


def _throughput(predict: Callable[[Any], Any], batch: Any, size: int) -> float:
    predict(batch)
    done, start = 0, time.perf_counter()
    while True:
        predict(batch)
        done += 1
        elapsed = time.perf_counter() - start
        if elapsed >= _BATCH_SECONDS and done >= 3:
            return done * size / elapsed


def peak_rss_mb(probe: Probe) -> float:
    """Peak resident memory (MiB) of a fresh process that loads the model and scores a batch:
    the model runner's child for a native model (``probe.measured_by``), else a python child
    running onnxruntime."""
    if probe.kind == NATIVE:
        if probe.measured_by is None:
            raise RuntimeError("memory probe for native: no model runner to measure it in")
        return probe.measured_by(probe.model, probe.rows)
    if probe.batch is None:
        raise RuntimeError(f"memory probe for {probe.kind}: no batch to score")
    # Isolated from the project (``python -c`` would import a numpy.py of the current folder)
    # and from mlops-ci's secrets: it needs neither.
    done = subprocess.run(
        [*python_argv(), "-c", _MEMORY_PROBE, str(probe.model), str(probe.batch)],
        cwd=probe.batch.parent,
        env=allowed_environment(),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"memory probe for {probe.kind} failed: {last}")
    return int(done.stdout.strip().splitlines()[-1]) / 1024  # KiB → MiB


def recommend(serving: EngineProfile) -> Recommendation:
    """Container requests from the measured figures (a starting point, stated with its reason).

    CPU: a tenth of a core per millisecond of single-row p95, between 100m and 2 cores.
    Memory: 1.5x the scoring process's peak RSS, rounded up to 64 MiB; the limit is twice it.
    """
    millicores = min(2000, max(100, math.ceil(serving.p95_ms * 100 / 50) * 50))
    request_mib = max(128, math.ceil(serving.peak_rss_mb * 1.5 / 64) * 64)
    return Recommendation(
        cpu_request=f"{millicores}m",
        memory_request=f"{request_mib}Mi",
        memory_limit=f"{request_mib * 2}Mi",
        why=(
            f"single-row p95 {serving.p95_ms:.3f} ms → {millicores}m; peak RSS "
            f"{serving.peak_rss_mb:.0f} MiB x 1.5 → {request_mib}Mi"
        ),
    )


def machine() -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
    }
