"""Adaptive batching (``serve.batching``): requests for one version that arrive together are
scored in one model call, each answered with its own rows.

Why adaptive, not timed: a batcher that waits ``max_delay`` for company (MLServer's
``max_batch_time``) adds that wait to every request of an idle server. Here, as Triton's and
BentoML's dispatchers do, a request that finds its version idle and no other request in the
worker is scored at once, with no hop; the batch grows only while the version is busy — while
a call runs, or while other requests of the same turn of the event loop are still on their way
to the model. A batch waits for more only for requests of its version already being read
(their bodies still arriving: the app routes a request before it reads its body), and at most
``max_delay_ms``.

A batched answer must be the answer the request gets alone, bit for bit. onnxruntime does not
promise that: some kernels take another path for one row or for a batch's last rows (its
LinearClassifier, LinearRegressor and SVMRegressor gave other last bits here). So before an
ONNX version is batched, ``inexact`` scores probe rows (made from its input contract and
parsed as a request would be) alone and together; a version whose answers differ is served
unbatched, and says why. A native model is batched within the parity tolerance package held.

Each request is parsed and checked alone before it joins (a bad row refuses its own request
only), requests join a call only with others of the same shape of input (the same columns
and dtypes: nothing is converted for company), and a call the model refuses is retried in
halves, so a model that refuses one request's values refuses that request alone. A call under
which a native model's runner died is not bisected (each half would replay the crash and
restart the runner): each of its requests is tried alone once.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from mlops_ci.config.types import Batching
from mlops_ci.model.features import BOOL, CATEGORY, NUMBER, Feature
from mlops_ci.runner.client import RunnerError
from mlops_ci.serve.model import LoadedModel, Prediction
from mlops_ci.serve.payload import Limits, batch_rows, parse_score

PROBE_ROWS = 9  # odd, past a SIMD width of 8: a batch's tail rows are compared too
# Company sizes probed (and max_batch_size): onnxruntime kernels may take another path by the
# size of a call (a SIMD tail, a blocked loop), so a row is compared in calls of several sizes.
PROBE_SIZES = (2, 3, 5, PROBE_ROWS)
PROBE_MAX_ROWS = 4096  # a larger max_batch_size is probed at this many rows (a bounded cost)

Call = Callable[[Any], Awaitable[Prediction] | Prediction]
Observe = Callable[[int, list[float]], None]  # rows of a call, each request's queue wait (s)


@dataclass
class _Waiting:
    x: Any
    rows: int
    key: tuple[Any, ...]
    future: asyncio.Future[Prediction]
    since: float


def signature(x: Any) -> tuple[Any, ...] | None:
    """What must be equal for two requests' inputs to be stacked into one call without a
    conversion: a matrix's dtype and width, a table's columns and dtypes in order."""
    if isinstance(x, np.ndarray) and x.ndim == 2:
        return ("matrix", x.dtype.str, x.shape[1])
    columns = x.values() if isinstance(x, dict) else ()
    if columns and all(isinstance(v, np.ndarray) and v.ndim == 1 for v in columns):
        return ("table", tuple((k, v.dtype.str) for k, v in x.items()))
    return None


def stacked(inputs: list[Any]) -> Any:
    """One input of every request's rows in order (``signature`` equal for all)."""
    if len(inputs) == 1:
        return inputs[0]
    if isinstance(inputs[0], dict):
        return {k: np.concatenate([x[k] for x in inputs]) for k in inputs[0]}
    return np.concatenate(inputs)


def parts(prediction: Prediction, sizes: list[int]) -> list[Prediction]:
    """The call's answer cut back into each request's rows."""
    out, start = [], 0
    for size in sizes:
        end = start + size
        labels = prediction.labels[start:end] if prediction.labels is not None else None
        out.append(Prediction(labels, prediction.scores[start:end]))
        start = end
    return out


def calibrate(model: LoadedModel, limits: Limits, max_batch_size: int | None = None) -> str | None:
    """Make an ONNX version's answers independent of the rows scored with it, or say why
    they are not (None: batching it is exact). Probe rows, parsed as requests would be, are
    scored in calls of each size of ``probe_sizes`` and one by one; where only a lone row
    differs (a kernel's one-row path), one-row requests are scored as a pair from here on
    (``pair_single_rows``), batched or not, so the answer is the same either way."""
    if model.in_runner:
        return None  # a native model: batched within the parity tolerance
    if limits.tensors is not None:
        return "batching a tensor model's requests is not built yet (issue 43)"
    try:
        rows = _probe_rows(limits)
        together = {
            size: parts(model.predict(stacked(_cycled(rows, size))), [1] * size)
            for size in probe_sizes(max_batch_size)
        }
        if _differs(together, [model.predict(x) for x in rows]) is None:
            return None
        model.pair_single_rows = True
        found = _differs(together, [model.predict(x) for x in rows])
    except Exception as err:  # a probe the model refuses proves nothing: not batched
        model.pair_single_rows = False
        return f"its answers could not be probed ({type(err).__name__}: {str(err)[:120]})"
    if found is None:
        return None
    model.pair_single_rows = False
    size, row = found
    return (
        f"onnxruntime answered probe row {row} with other bits in a batch of {size} rows than "
        "alone (a kernel whose result depends on the rows scored with it)"
    )


def probe_sizes(max_batch_size: int | None) -> list[int]:
    """The call sizes a row is probed in: ``PROBE_SIZES`` and the largest batch a call can
    take (up to ``PROBE_MAX_ROWS``), none larger than that batch."""
    if max_batch_size is None:
        return list(PROBE_SIZES)
    largest = min(max_batch_size, PROBE_MAX_ROWS)
    return sorted({s for s in PROBE_SIZES if s < largest} | {largest})


def _cycled(rows: list[Any], size: int) -> list[Any]:
    """``size`` probe rows: the distinct ones over and over (each place compared alone)."""
    return [rows[i % len(rows)] for i in range(size)]


def _probe_rows(limits: Limits) -> list[Any]:
    """Single-row inputs of every kind of column, each parsed as its request would be."""
    rng = np.random.default_rng(0)
    rows = []
    for i in range(PROBE_ROWS):
        if limits.schema is None:
            row: Any = [float(v) for v in rng.normal(0, 3, limits.n_features)]
        else:
            row = {f.name: _probe_value(f, i, rng) for f in limits.schema.features}
        rows.append(parse_score(orjson.dumps({"inputs": [row]}), limits))
    return rows


def _differs(
    together: dict[int, list[Prediction]], alone: list[Prediction]
) -> tuple[int, int] | None:
    """The first call size and row in it whose label or score bits differ from the row's
    answer alone, or None."""
    for size, answers in together.items():
        for i, a in enumerate(answers):
            b = alone[i % len(alone)]
            labels = [p.labels.tolist() if p.labels is not None else None for p in (a, b)]
            if labels[0] != labels[1] or a.scores.tobytes() != b.scores.tobytes():
                return size, i
    return None


def _probe_value(feature: Feature, i: int, rng: np.random.Generator) -> Any:
    """A value of the column's kind as a client sends it in JSON."""
    if feature.kind == NUMBER:
        return float(rng.normal(0, 3)) * (10 ** (i % 3))
    if feature.kind == BOOL:
        return bool(i % 2)
    if feature.kind == CATEGORY and feature.categories:
        value = feature.categories[i % len(feature.categories)]
        return value.item() if isinstance(value, np.generic) else value
    if feature.nullable and i % 4 == 3:
        return None
    return ("red", "probe", "b")[i % 3]


async def _result(value: Awaitable[Prediction] | Prediction) -> Prediction:
    return value if isinstance(value, Prediction) else await value


class Batcher:
    """One version's queue in one worker. ``call`` is the version's one model call (on the
    event loop for a small ONNX batch, in a thread for a native model or a large batch);
    ``in_flight`` counts the worker's requests not yet answered; ``arriving`` those routed to
    this version not yet at a model (their bodies being read: /score and v2 alike, which may
    join one call)."""

    def __init__(
        self,
        call: Call,
        batching: Batching,
        observe: Observe,
        in_flight: Callable[[], int],
        arriving: Callable[[], int],
    ) -> None:
        self.call = call
        self.max_rows = batching.max_batch_size
        self.max_delay_s = batching.max_delay_ms / 1000
        self.observe = observe
        self.in_flight = in_flight
        self.arriving = arriving
        self.waiting: deque[_Waiting] = deque()
        self.busy = False  # a call runs, or a drain is scheduled
        self._joined: asyncio.Event | None = None
        self._drainer: asyncio.Future[None] | None = None  # held: the loop keeps tasks weakly

    async def predict(self, x: Any) -> Prediction:
        rows = batch_rows(x)
        key = signature(x)
        if rows >= self.max_rows or key is None:
            return await self._alone(x, rows)  # a full batch already: no company
        if not self.busy and not self.waiting and self.in_flight() <= 1:
            return await self._alone(x, rows)  # idle and alone: at once, no hop
        future: asyncio.Future[Prediction] = asyncio.get_running_loop().create_future()
        self.waiting.append(_Waiting(x, rows, key, future, time.perf_counter()))
        if self._joined is not None:
            self._joined.set()
        if not self.busy:
            self.busy = True
            # After the requests already runnable in this turn have joined.
            self._drainer = asyncio.ensure_future(self._drain())
        return await future

    async def _alone(self, x: Any, rows: int) -> Prediction:
        if self.busy:  # a drain is running: this one does not wait behind it
            prediction = await _result(self.call(x))
            self.observe(rows, [0.0])
            return prediction
        self.busy = True
        try:
            prediction = await _result(self.call(x))
        finally:
            self.busy = False
            if self.waiting:  # they joined while a native call ran in its thread
                self.busy = True
                self._drainer = asyncio.ensure_future(self._drain())
        self.observe(rows, [0.0])
        return prediction

    async def _drain(self) -> None:
        try:
            while self.waiting:
                await self._gather()
                batch = self._take()
                await self._score(batch)
                if self.waiting:
                    await asyncio.sleep(0)  # answers out, newcomers in, before the next call
        finally:
            self.busy = False

    async def _gather(self) -> None:
        """Wait, at most ``max_delay_ms`` from the oldest request, for requests of this version
        whose bodies are still being read, while the batch has room."""
        if self.max_delay_s <= 0:
            return
        deadline = self.waiting[0].since + self.max_delay_s
        while self.arriving() > 0 and sum(w.rows for w in self.waiting) < self.max_rows:
            left = deadline - time.perf_counter()
            if left <= 0:
                return
            self._joined = asyncio.Event()
            try:
                await asyncio.wait_for(self._joined.wait(), left)
            except asyncio.TimeoutError:
                return
            finally:
                self._joined = None

    def _take(self) -> list[_Waiting]:
        """The oldest request and those after it with the same input shape, up to
        ``max_batch_size`` rows; the others keep their places."""
        first = self.waiting.popleft()
        batch, rows, kept = [first], first.rows, deque[_Waiting]()
        while self.waiting:
            w = self.waiting.popleft()
            if w.key == first.key and rows + w.rows <= self.max_rows:
                batch.append(w)
                rows += w.rows
            else:
                kept.append(w)
        self.waiting = kept
        return [w for w in batch if not w.future.cancelled()]

    async def _score(self, batch: list[_Waiting]) -> None:
        if not batch:
            return
        now = time.perf_counter()
        await self._call_split([(w, now - w.since) for w in batch])

    async def _call_split(self, batch: list[tuple[_Waiting, float]]) -> None:
        """One call for the batch; where the model refuses it, each half again (bisection):
        a request whose values the model refuses gets its error alone, and the others still
        share calls (a stream with a bad row in every batch is not scored a row at a time).
        Where the model runner's child died under the call, bisecting would replay the crash
        (and restart the runner) log2(n) times: each request is tried alone once instead."""
        try:
            prediction = await _result(self.call(stacked([w.x for w, _ in batch])))
        except RunnerError as err:
            if len(batch) == 1:
                _settle(batch[0][0].future, error=err)
                return
            for one in batch:
                await self._call_alone(one)
            return
        except Exception as err:
            if len(batch) == 1:
                _settle(batch[0][0].future, error=err)
                return
            half = len(batch) // 2
            await self._call_split(batch[:half])
            await self._call_split(batch[half:])
            return
        self._answer(batch, prediction)

    async def _call_alone(self, one: tuple[_Waiting, float]) -> None:
        try:
            prediction = await _result(self.call(one[0].x))
        except Exception as err:
            _settle(one[0].future, error=err)
            return
        self._answer([one], prediction)

    def _answer(self, batch: list[tuple[_Waiting, float]], prediction: Prediction) -> None:
        sizes = [w.rows for w, _ in batch]
        for (w, _), part in zip(batch, parts(prediction, sizes), strict=True):
            _settle(w.future, part)
        self.observe(sum(sizes), [wait for _, wait in batch])


def _settle(
    future: asyncio.Future[Prediction],
    prediction: Prediction | None = None,
    error: BaseException | None = None,
) -> None:
    if future.done():  # its client went away
        return
    if error is not None:
        future.set_exception(error)
    else:
        assert prediction is not None
        future.set_result(prediction)
