"""Adaptive batching (serve.batching): who is scored at once, who joins a call, what each
request gets back, and the exactness probe that decides whether a version is batched."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any, cast

import numpy as np
import pytest

from mlops_ci.config.types import Batching
from mlops_ci.model.features import Feature, FeatureSchema
from mlops_ci.runner.client import RunnerError
from mlops_ci.serve.batching import Batcher, calibrate, parts, signature, stacked
from mlops_ci.serve.model import LoadedModel, ModelSpec, Prediction
from mlops_ci.serve.payload import Limits, PayloadError

pytestmark = pytest.mark.timeout(60)


class Model:
    """Answers each row with the sum of its values (scores) and 'neg'/'pos' (labels);
    refuses a call holding a row whose first value is -1; its runner's child dies on a call
    holding a row whose first value is -99, or on the next ``crashes`` calls; records every
    call's rows."""

    def __init__(self, delay_s: float = 0.0, crashes: int = 0) -> None:
        self.calls: list[int] = []
        self.delay_s = delay_s
        self.crashes = crashes
        self.restarts = 0  # calls that found the child dead (the runner starts it again)

    def call(self, x: Any) -> Prediction:
        rows = np.asarray(x, np.float64)
        self.calls.append(len(rows))
        if (rows[:, 0] == -1).any():
            raise PayloadError(422, "the model cannot score these values: -1")
        if (rows[:, 0] == -99).any() or self.crashes > 0:
            self.crashes -= 1
            self.restarts += 1
            raise RunnerError("the model runner stopped (exit -11) during outputs")
        sums = rows.sum(axis=1, keepdims=True)
        labels = np.where(sums[:, 0] > 0, "pos", "neg").astype(object)
        return Prediction(labels, sums)

    async def slow(self, x: Any) -> Prediction:  # a native model: the call waits in a thread
        await asyncio.sleep(self.delay_s)
        return self.call(x)


def batcher(
    model: Model,
    size: int = 32,
    delay_ms: float = 2.0,
    in_flight: int = 10,
    arriving: list[int] | None = None,
    slow: bool = False,
) -> tuple[Batcher, list[tuple[int, list[float]]]]:
    seen: list[tuple[int, list[float]]] = []
    reading = arriving if arriving is not None else [0]
    b = Batcher(
        model.slow if slow else model.call,
        Batching(size, delay_ms),
        lambda rows, waits: seen.append((rows, waits)),
        lambda: in_flight,
        lambda: reading[0],
    )
    return b, seen


def rows_of(*values: float) -> np.ndarray:
    return np.array([[v, 1.0] for v in values])


def test_an_idle_worker_scores_a_lone_request_at_once_without_queueing() -> None:
    model = Model()
    b, seen = batcher(model, in_flight=1)

    async def one() -> Prediction:
        coro = b.predict(rows_of(2.0))
        return await coro

    answer = asyncio.run(one())
    assert model.calls == [1] and seen == [(1, [0.0])]
    assert answer.scores.tolist() == [[3.0]] and not b.waiting and not b.busy


def test_requests_arriving_together_share_one_call_and_get_their_own_rows() -> None:
    model = Model()
    b, seen = batcher(model)

    async def many() -> list[Prediction]:
        asks = (b.predict(rows_of(i + 2.0, -i - 2.0)) for i in range(10))
        return await asyncio.gather(*asks)

    answers = asyncio.run(many())
    assert model.calls == [20]  # ten requests of two rows: one call
    for i, answer in enumerate(answers):
        assert answer.scores[:, 0].tolist() == [i + 3.0, -i - 1.0]
        assert answer.labels is not None and list(answer.labels) == ["pos", "neg"]
    assert seen[0][0] == 20 and len(seen[0][1]) == 10 and all(w >= 0 for w in seen[0][1])


def test_a_call_takes_at_most_max_batch_size_rows_and_a_large_request_goes_alone() -> None:
    model = Model()
    b, _ = batcher(model, size=4)

    async def many() -> list[Prediction]:
        small = [b.predict(rows_of(float(i))) for i in range(10)]
        return await asyncio.gather(*small, b.predict(rows_of(*range(6))))

    answers = asyncio.run(many())
    assert sorted(model.calls) == [2, 4, 4, 6]  # the 6-row request in a call of its own
    assert [a.scores[0, 0] for a in answers[:10]] == [i + 1.0 for i in range(10)]


def test_inputs_of_another_shape_are_not_stacked_with_each_other() -> None:
    model = Model()
    b, _ = batcher(model)

    async def many() -> list[Prediction]:
        wide = np.array([[1.0, 1.0, 1.0]])
        as32 = rows_of(5.0).astype(np.float32)
        return await asyncio.gather(
            b.predict(rows_of(1.0)), b.predict(wide), b.predict(as32), b.predict(rows_of(2.0))
        )

    answers = asyncio.run(many())
    assert sorted(model.calls) == [1, 1, 2]  # the two float64 pairs together, each other alone
    assert [float(a.scores[0, 0]) for a in answers] == [2.0, 3.0, 6.0, 3.0]
    assert signature(rows_of(1.0)) != signature(rows_of(1.0).astype(np.float32))
    assert signature({"a": np.zeros(2)}) != signature({"b": np.zeros(2)})


# 8 -> 4 (fine) + 4 (refused) -> 2 (refused) + 2 (fine) -> 1 (refused) + 1 (fine)
BISECTED = ([8, 4, 4, 2, 1, 1, 2], [4, 1, 2], 0)
# A crash is not bisected: 8 (the child dies) -> each alone once (it dies under -99 again)
ALONE = ([8] + [1] * 8, [1] * 7, 2)


@pytest.mark.parametrize(("bad", "error", "want"), [(-1.0, PayloadError, BISECTED),
                                                    (-99.0, RunnerError, ALONE)])  # fmt: skip
def test_a_refused_call_is_bisected_and_a_crashed_one_tried_alone_so_only_the_bad_request_fails(
    bad: float, error: type[Exception], want: tuple[list[int], list[int], int]
) -> None:
    """A row that kills the model runner's child: bisection replayed the crash (and a runner
    restart) log2(n) + 1 times; the batch's requests are now tried alone once each, so the
    child dies once more, under the request that kills it, which alone gets the error."""
    model = Model()
    b, seen = batcher(model)

    async def many() -> list[Any]:
        asks = [b.predict(rows_of(v)) for v in (1.0, 2.0, 3.0, 4.0, bad, 6.0, 7.0, 8.0)]
        return await asyncio.gather(*asks, return_exceptions=True)

    answers = asyncio.run(many())
    assert isinstance(answers.pop(4), error)
    assert [a.scores[0, 0] for a in answers] == [2.0, 3.0, 4.0, 5.0, 7.0, 8.0, 9.0]
    calls, answered, restarts = want
    assert model.calls == calls and model.restarts == restarts
    assert [rows for rows, _ in seen] == answered  # the calls that answered


def test_a_runner_that_died_once_under_a_batch_answers_every_request_alone() -> None:
    model = Model(crashes=1)
    b, _ = batcher(model)

    async def many() -> list[Prediction]:
        return await asyncio.gather(*(b.predict(rows_of(float(v))) for v in range(4)))

    answers = asyncio.run(many())
    assert [a.scores[0, 0] for a in answers] == [1.0, 2.0, 3.0, 4.0]
    assert model.calls == [4, 1, 1, 1, 1] and model.restarts == 1


def test_requests_arriving_while_a_call_runs_join_the_next_call() -> None:
    model = Model(delay_s=0.05)
    b, seen = batcher(model, slow=True)

    async def scenario() -> list[Prediction]:
        first = asyncio.ensure_future(b.predict(rows_of(1.0)))
        await asyncio.sleep(0.01)  # the first call is running
        later = [asyncio.ensure_future(b.predict(rows_of(float(i)))) for i in range(5)]
        return [await first, *await asyncio.gather(*later)]

    answers = asyncio.run(scenario())
    assert model.calls == [1, 5]
    assert [a.scores[0, 0] for a in answers] == [2.0, 1.0, 2.0, 3.0, 4.0, 5.0]
    assert min(seen[1][1]) >= 0.03  # they waited for the running call, not longer


def test_a_batch_waits_for_bodies_still_arriving_at_most_max_delay() -> None:
    model = Model()
    arriving = [1]  # a body that never completes
    b, _ = batcher(model, delay_ms=30, arriving=arriving)

    async def one() -> float:
        started = time.perf_counter()
        await asyncio.gather(b.predict(rows_of(1.0)), b.predict(rows_of(2.0)))
        return time.perf_counter() - started

    waited = asyncio.run(one())
    assert 0.025 <= waited < 0.5 and model.calls == [2]
    arriving[0] = 0
    b2, _ = batcher(Model(), delay_ms=30, arriving=arriving)

    async def unhurried() -> float:
        started = time.perf_counter()
        await asyncio.gather(b2.predict(rows_of(1.0)), b2.predict(rows_of(2.0)))
        return time.perf_counter() - started

    assert asyncio.run(unhurried()) < 0.02  # nothing arriving: no wait


def test_parts_and_stacked_keep_order_and_tables() -> None:
    tables = [{"a": np.array([1.0]), "t": np.array(["x"], dtype=object)}] * 2
    both = stacked(tables)
    assert both["a"].tolist() == [1.0, 1.0] and both["t"].tolist() == ["x", "x"]
    cut = parts(Prediction(None, np.arange(6.0).reshape(3, 2)), [2, 1])
    assert cut[0].scores.tolist() == [[0, 1], [2, 3]] and cut[1].scores.tolist() == [[4, 5]]


class _Probed:
    """A LoadedModel's face for the probe: answers depend on the call's size as asked."""

    in_runner = False

    def __init__(
        self, lone_differs: bool, position_differs: bool, sizes_differ: tuple[int, ...] = ()
    ) -> None:
        self.lone_differs, self.position_differs = lone_differs, position_differs
        self.sizes_differ = sizes_differ  # calls of these many rows take another kernel
        self.pair_single_rows = False
        self.calls: list[int] = []

    def predict(self, x: Any) -> Prediction:
        if self.pair_single_rows and len(x) == 1:
            return Prediction(None, self.predict(np.concatenate([x, x])).scores[:1])
        self.calls.append(len(x))
        scores = np.asarray(x, np.float64).sum(axis=1, keepdims=True)
        if len(x) in self.sizes_differ:
            scores = scores * (1 + 2**-52)
        if self.lone_differs and len(x) == 1:
            scores = scores + 1e-12
        if self.position_differs:
            scores = scores + np.arange(len(x)).reshape(-1, 1) * 1e-12
        return Prediction(None, scores)


LIMITS = Limits(2, ("a", "b"), 100, FeatureSchema((Feature("a", "number"), Feature("b", "number"))))


@pytest.mark.parametrize(
    ("lone", "position", "paired", "batched"),
    [(False, False, False, True), (True, False, True, True), (False, True, False, False)],
)
def test_calibrate_pairs_lone_rows_or_refuses_batching_when_bits_depend_on_company(
    lone: bool, position: bool, paired: bool, batched: bool
) -> None:
    model = _Probed(lone, position)
    why = calibrate(cast(LoadedModel, model), LIMITS)
    assert model.pair_single_rows is paired
    assert (why is None) is batched
    if not batched:
        assert why is not None and "other bits in a batch of 2 rows than alone" in why


@pytest.mark.parametrize("size", [2, 3, 5, 9, 24])
def test_calibrate_probes_every_company_size_up_to_max_batch_size(size: int) -> None:
    """onnxruntime kernels may take another path at some batch sizes: a version whose bits
    differ at any probed size (2, 3, 5, 9 rows and max_batch_size) is not batched (only 9 was
    probed before: a kernel that changes at 5 or 24 rows was batched)."""
    model = _Probed(False, False, sizes_differ=(size,))
    why = calibrate(cast(LoadedModel, model), LIMITS, max_batch_size=24)
    assert why is not None and "other bits in a batch of" in why, why
    # (at 2 rows, the lone row paired takes the 2-row path: then 3 rows differ from it)
    assert f"in a batch of {max(size, 3)} rows than alone" in why
    assert not model.pair_single_rows
    assert sorted(set(model.calls)) == [1, 2, 3, 5, 9, 24]
    # Batching off (or not asked): the sizes up to 9 alone are probed.
    assert calibrate(cast(LoadedModel, _Probed(False, False, (24,))), LIMITS) is None
    assert calibrate(cast(LoadedModel, _Probed(False, False)), LIMITS, max_batch_size=24) is None


def test_calibrate_on_onnxruntimes_linear_classifier_pairs_its_lone_rows(tmp_path: Path) -> None:
    """onnxruntime's LinearClassifier answers one row by another kernel than two (its last
    bits differ): paired, a lone row's answer is the answer it gets in any batch."""
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import FloatTensorType
    from sklearn.linear_model import LogisticRegression

    from mlops_ci.packaging.convert import INPUT_NAME

    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 4)).astype(np.float32)
    fitted = LogisticRegression().fit(x, (x[:, 0] + x[:, 1] > 0).astype(int) + (x[:, 2] > 1))
    onx = to_onnx(
        fitted,
        initial_types=[(INPUT_NAME, FloatTensorType([None, 4]))],
        options={id(fitted): {"zipmap": False}},
    )
    (tmp_path / "model.onnx").write_bytes(onx.SerializeToString())
    names = ("a", "b", "c", "d")
    spec = ModelSpec("m", "1", "onnx", tmp_path, names, "0" * 64, classes=("0", "1", "2"))
    model = LoadedModel(spec)
    limits = Limits(4, names, 100, spec.schema)
    assert calibrate(model, limits) is None and model.pair_single_rows
    rows = rng.normal(size=(40, 4))
    together = model.predict(rows).scores
    alone = np.concatenate([model.predict(rows[i : i + 1]).scores for i in range(40)])
    assert together.tobytes() == alone.tobytes()


def test_an_image_built_with_serve_batching_carries_it_in_the_variables_serve_reads() -> None:
    from click.testing import CliRunner

    from mlops_ci.cli.serving import serve
    from mlops_ci.packaging.context import ContextSpec, dockerfile

    env = Batching(16, 0.5).env()
    spec = ContextSpec("m", "1", "r", "onnx", "python:3.11-slim", 8080, None, None, wheel="w",
                       serve_env=tuple(env.items()))  # fmt: skip
    text = dockerfile(spec, "digest")
    assert "MLOPS_SERVE_MAX_BATCH_SIZE=16" in text and "MLOPS_SERVE_MAX_DELAY_MS=0.5" in text
    options = {o.name: o for o in serve.params}
    assert {options["max_batch_size"].envvar, options["max_delay_ms"].envvar} == set(env)
    assert "MLOPS_SERVE" not in dockerfile(
        ContextSpec("m", "1", "r", "onnx", "b", 1, None, None, wheel="w"), "d"
    )
    assert CliRunner().invoke(serve, ["--help"]).exit_code == 0


def test_flags_over_serve_batching() -> None:
    from dataclasses import replace

    from mlops_ci.config.types import serve_config
    from mlops_ci.errors import InputError
    from mlops_ci.serve.command import batching_over

    off = serve_config()
    on = replace(off, batching=Batching(32, 2.0))
    assert off.batching is None  # the default
    assert serve_config({"batching": {}}).batching == Batching(32, 2.0)  # the schema's defaults
    assert serve_config({"batching": {"max_batch_size": 1}}).batching is None
    assert batching_over(off, {"max_batch_size": 8}) == Batching(8, 2.0)
    assert batching_over(on, {"max_delay_ms": 0.0}) == Batching(32, 0.0)
    assert batching_over(on, {"max_batch_size": 1}) is None  # 1 turns it off
    assert batching_over(on, {}) == on.batching
    with pytest.raises(InputError, match="--max-delay-ms: batching is off"):
        batching_over(off, {"max_delay_ms": 5.0})
