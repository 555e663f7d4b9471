"""What serving a model costs, measured for the candidate and production side by side.

Both models run here with the runtime their version would serve with (ONNX where the
conversion is exact, else the native model: ``packaging.runtime``), on the same evaluation
rows. A percentile of single-row latency is a noisy figure, so the measurement is built to be
fair and repeatable rather than fast:

- the two models' single-row calls are interleaved call by call (A, B, A, B, ...), so a burst
  of load on the machine hits both, and the order flips each round;
- each round lasts ``round_seconds`` per model and at least ``MIN_CALLS`` calls; a round's
  p50/p95/p99 are taken over its calls and the figure is the median over ``rounds`` rounds;
- the garbage collector is held off while timing (it runs between rounds);
- throughput (rows/s) is timed on batches of ``batch_rows`` rows each round, median kept;
- peak RSS is that of a fresh process loading the model and scoring a batch (for a native
  model, a fresh model runner's child); size is the size of the files that would be served.

A native model is the model runner's ``RemoteModel`` (a model a training command wrote is
never loaded in mlops-ci's process), so its latency and throughput here include the round
trip to the runner's child: the rows encoded and decoded, the answer's arrays, the pipe
(about a millisecond a single-row call on the machine this was written on, where a small
scikit-learn model itself takes half of one). Both roles pay it alike when both are native,
so the gate still compares like with like, though a relative rule sees the gap diluted by
the shared overhead; when one side serves ONNX and the other the native model, the native
side carries it alone. ``package``'s profile times the native model in the child instead
(``Engine.timed``), where the pipe is not counted.
"""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from mlops_ci.config.types import CostConfig
from mlops_ci.packaging.profile import peak_rss_mb
from mlops_ci.packaging.runtime import Engine

MIN_CALLS = 100  # single-row calls per model per round, at least
MAX_CALLS = 20_000
DISTINCT_ROWS = 64  # single rows cycled through (prepared before timing)
MIB = 1024 * 1024


@dataclass(frozen=True)
class Cost:
    runtime: str  # onnxruntime | sklearn: what the version would serve with
    note: str  # why the native model, when it is
    metrics: dict[str, float]  # COST_METRICS name -> value
    calls: int  # single-row calls timed in all


def measure(
    engines: dict[str, Engine],
    settings: CostConfig,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, dict[str, float]]:
    """Each engine's cost figures (and ``calls``, the single-row calls timed), measured
    together as the module says."""
    names = list(engines)
    singles = {n: [engines[n].row(i) for i in range(DISTINCT_ROWS)] for n in names}
    batches = {n: engines[n].rows(settings.batch_rows) for n in names}
    for n in names:  # warm up: first calls allocate and compile
        for one in singles[n][:20]:
            engines[n].predict(one)
        engines[n].predict(batches[n])
    rounds: dict[str, list[tuple[float, float, float, float]]] = {n: [] for n in names}
    calls = {n: 0 for n in names}
    for r in range(settings.rounds):
        order = names if r % 2 == 0 else names[::-1]
        gc.collect()
        gc.disable()
        try:
            latencies = _interleaved(engines, singles, order, settings.round_seconds)
            speeds = {n: _rows_per_s(engines[n], batches[n], settings) for n in order}
        finally:
            gc.enable()
        for n in names:
            p50, p95, p99 = (float(v) for v in np.percentile(latencies[n], [50, 95, 99]))
            rounds[n].append((p50, p95, p99, speeds[n]))
            calls[n] += len(latencies[n])
        if progress is not None:
            progress(r + 1, settings.rounds)
    out: dict[str, dict[str, float]] = {}
    for n in names:
        column = list(zip(*rounds[n], strict=True))
        out[n] = {
            "latency_p50_ms": statistics.median(column[0]),
            "latency_p95_ms": statistics.median(column[1]),
            "latency_p99_ms": statistics.median(column[2]),
            "rows_per_s": statistics.median(column[3]),
            "peak_rss_mb": peak_rss_mb(engines[n].probe),
            "model_size_mb": engines[n].size_bytes / MIB,
            "calls": float(calls[n]),
        }
    return out


def _interleaved(
    engines: dict[str, Engine], singles: dict[str, list[object]], order: list[str], seconds: float
) -> dict[str, list[float]]:
    """Single-row latencies (ms), the engines called in turn on the same row each step."""
    found: dict[str, list[float]] = {n: [] for n in order}
    deadline = time.perf_counter() + seconds * len(order)
    i = 0
    while i < MAX_CALLS and (i < MIN_CALLS or time.perf_counter() < deadline):
        for n in order:
            one = singles[n][i % DISTINCT_ROWS]
            start = time.perf_counter_ns()
            engines[n].predict(one)
            found[n].append((time.perf_counter_ns() - start) / 1e6)
        i += 1
    return found


def _rows_per_s(engine: Engine, batch: object, settings: CostConfig) -> float:
    done, start = 0, time.perf_counter()
    while True:
        engine.predict(batch)
        done += 1
        elapsed = time.perf_counter() - start
        if done >= 3 and elapsed >= settings.round_seconds / 2:
            return done * settings.batch_rows / elapsed
