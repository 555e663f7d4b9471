"""What serving a model costs, measured for the candidate and production side by side.

Both models run here with the runtime their version would serve with (ONNX where the
conversion is exact, else the native model: ``packaging.runtime``), on the same evaluation
rows. A percentile of single-row latency is a noisy figure, so the measurement is built to be
fair and repeatable rather than fast:

- the two models' single-row calls are interleaved call by call, each model first in every
  other step (A B, B A, A B, ...), so a burst of load on the machine hits both alike and
  neither always pays for following the loop's own work;
- each round lasts ``round_seconds`` per model and at least ``MIN_CALLS`` calls; p50/p95/p99
  are taken over all the rounds' calls pooled. Pooling keeps the pairing: both models' calls
  span the same moments. A median of per-round percentiles does not: on a loaded 2-core CI
  machine the same model measured against itself once came out 25.7 % apart on p99 that way
  (a round's p99 of a 7 µs call is set by the few calls a preemption hit), while pooled
  percentiles of the same interleaving stayed within 2 % under three CPU hogs;
- the garbage collector is held off while timing (it runs between rounds);
- throughput (rows/s) is timed on batches of ``batch_rows`` rows, the two models' batches
  interleaved too, over all rounds;
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
    provider: str = ""  # ONNX: the execution provider that ran (and any fallback, in words)


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
    latencies: dict[str, list[float]] = {n: [] for n in names}
    batch_time = {n: 0.0 for n in names}
    batch_calls = {n: 0 for n in names}
    for r in range(settings.rounds):
        order = names if r % 2 == 0 else names[::-1]
        gc.collect()
        gc.disable()
        try:
            for n, found in _interleaved(engines, singles, order, settings.round_seconds).items():
                latencies[n] += found
            for n, (seconds, done) in _batches(engines, batches, order, settings).items():
                batch_time[n] += seconds
                batch_calls[n] += done
        finally:
            gc.enable()
        if progress is not None:
            progress(r + 1, settings.rounds)
    out: dict[str, dict[str, float]] = {}
    for n in names:
        p50, p95, p99 = (float(v) for v in np.percentile(latencies[n], [50, 95, 99]))
        out[n] = {
            "latency_p50_ms": p50,
            "latency_p95_ms": p95,
            "latency_p99_ms": p99,
            "rows_per_s": batch_calls[n] * settings.batch_rows / batch_time[n],
            "peak_rss_mb": peak_rss_mb(engines[n].probe),
            "model_size_mb": engines[n].size_bytes / MIB,
            "calls": float(len(latencies[n])),
        }
    return out


def _interleaved(
    engines: dict[str, Engine], singles: dict[str, list[object]], order: list[str], seconds: float
) -> dict[str, list[float]]:
    """Single-row latencies (ms), the engines called in turn on the same row each step, the
    one called first alternating step by step."""
    found: dict[str, list[float]] = {n: [] for n in order}
    turns = (order, order[::-1])
    deadline = time.perf_counter() + seconds * len(order)
    i = 0
    while i < MAX_CALLS and (i < MIN_CALLS or time.perf_counter() < deadline):
        for n in turns[i % 2]:
            one = singles[n][i % DISTINCT_ROWS]
            start = time.perf_counter_ns()
            engines[n].predict(one)
            found[n].append((time.perf_counter_ns() - start) / 1e6)
        i += 1
    return found


def _batches(
    engines: dict[str, Engine], batches: dict[str, object], order: list[str], settings: CostConfig
) -> dict[str, tuple[float, int]]:
    """Each engine's time (s) and count of batch calls, the engines' batches interleaved for
    at least three calls each and ``round_seconds / 2`` of calls each."""
    spent = {n: 0.0 for n in order}
    done = {n: 0 for n in order}
    turns = (order, order[::-1])
    i = 0
    while i < 3 or min(spent.values()) < settings.round_seconds / 2:
        for n in turns[i % 2]:
            start = time.perf_counter()
            engines[n].predict(batches[n])
            spent[n] += time.perf_counter() - start
            done[n] += 1
        i += 1
    return {n: (spent[n], done[n]) for n in order}
