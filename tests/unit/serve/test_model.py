"""A native version as serve holds it: its model in a model runner (a fake one here), its
refusals as 4xx answers, its runner stopped with it; the isolation serve and batch-score ask
for; the serving image's command."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mlops_ci.errors import InputError
from mlops_ci.runner.client import RunnerError, ValuesRefused
from mlops_ci.sandbox import Isolation
from mlops_ci.serve import command
from mlops_ci.serve import model as served
from mlops_ci.serve.model import LoadedModel, ModelSpec
from mlops_ci.serve.payload import PayloadError
from mlops_ci.serve.service import Service, ServiceSettings, settings_from_env, settings_to_env


class FakeRemote:
    """A RemoteModel's face: a classifier of two features answering in one round trip."""

    model_is_classifier = True
    n_features_in_ = 2

    def __init__(self, runner: FakeRunner) -> None:
        self.runner = runner

    def model_outputs(self, x: Any) -> tuple[Any, Any]:
        self.runner.calls += len(x) > 0  # not the warm-up's empty table
        if self.runner.hold is not None and len(x) > 0:
            self.runner.started.set()
            assert self.runner.hold.wait(10)
            if self.runner.closed:  # its child was stopped under the call
                raise RunnerError("the model runner stopped (exit -15) during call")
        if self.runner.refuse:
            raise ValuesRefused("Found unknown categories ['z'] in column 0 during transform")
        if self.runner.die:
            self.runner.die = False
            raise RunnerError("the model runner stopped (exit -9) during call")
        rows = len(x)
        return np.array(["a"] * rows, dtype=object), np.tile([0.75, 0.25], (rows, 1))


class FakeRunner:
    made: list[FakeRunner] = []

    def __init__(self, isolation: str = "auto") -> None:
        self.isolation = isolation
        self.loaded: list[Path] = []
        self.calls = 0
        self.closed = False
        self.refuse = False
        self.die = False
        self.hold: threading.Event | None = None  # set: a call waits for it
        self.started = threading.Event()
        FakeRunner.made.append(self)

    def load_folder(self, folder: Path) -> FakeRemote:
        self.loaded.append(folder)
        if folder.name == "refused":
            raise InputError("model.skops: names type(s) builtins.eval, which are not on the list")
        return FakeRemote(self)

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def runners(monkeypatch: pytest.MonkeyPatch) -> list[FakeRunner]:
    FakeRunner.made = []
    monkeypatch.setattr(served, "ModelRunner", FakeRunner)
    return FakeRunner.made


def native(tmp_path: Path, version: str = "1") -> ModelSpec:
    return ModelSpec("m", version, "sklearn", tmp_path, ("x0", "x1"), f"sha-{version}")


def test_a_native_model_is_loaded_and_scored_in_its_runner(
    runners: list[FakeRunner], tmp_path: Path
) -> None:
    model = LoadedModel(native(tmp_path), isolation="required")
    (runner,) = runners
    assert runner.isolation == "required" and runner.loaded == [tmp_path]
    assert model.in_runner and model.is_classifier and model.n_features == 2
    said = model.predict(np.zeros((3, 2)))
    assert said.labels is not None and list(said.labels) == ["a", "a", "a"]
    assert said.scores.shape == (3, 2) and runner.calls == 1  # one round trip
    model.close()
    assert runner.closed
    with pytest.raises(PayloadError) as gone:
        model.predict(np.zeros((1, 2)))
    assert gone.value.status == 503 and "was unloaded" in str(gone.value)


def test_values_the_model_refuses_are_a_422_naming_its_reason(
    runners: list[FakeRunner], tmp_path: Path
) -> None:
    model = LoadedModel(native(tmp_path))
    runners[0].refuse = True
    with pytest.raises(PayloadError) as refused:
        model.predict({"x0": np.array([1.0]), "x1": np.array([2.0])})
    assert refused.value.status == 422
    assert str(refused.value) == (
        "the model cannot score these values: "
        "Found unknown categories ['z'] in column 0 during transform"
    )


def test_a_runner_that_stopped_fails_its_request_and_the_next_one_reloads(
    runners: list[FakeRunner], tmp_path: Path
) -> None:
    model = LoadedModel(native(tmp_path))
    (runner,) = runners
    runner.die = True
    with pytest.raises(RunnerError):
        model.predict(np.zeros((1, 2)))
    assert model.predict(np.zeros((1, 2))).scores.shape == (1, 2)
    assert runner.loaded == [tmp_path, tmp_path]


def test_a_shared_runner_is_left_to_its_owner(runners: list[FakeRunner], tmp_path: Path) -> None:
    shared = FakeRunner()
    model = LoadedModel(native(tmp_path), runner=shared)  # type: ignore[arg-type]
    model.close()
    assert not shared.closed and runners == [shared]


def test_a_model_its_runner_refuses_to_load_stops_that_runner(
    runners: list[FakeRunner], tmp_path: Path
) -> None:
    with pytest.raises(InputError, match="builtins.eval"):
        LoadedModel(native(tmp_path / "refused"))
    assert runners[0].closed


def test_the_service_stops_a_version_runner_when_it_drops_the_version(
    runners: list[FakeRunner], tmp_path: Path
) -> None:
    settings = ServiceSettings(
        [native(tmp_path / "a", "1"), native(tmp_path / "b", "2")],
        {"1": 1.0, "2": 0.0},
        isolation="off",
    )
    service = Service(settings)
    first, second = runners
    assert first.isolation == second.isolation == "off"
    service.unload("2")
    assert second.closed and not first.closed
    service.close()
    assert first.closed


@pytest.mark.timeout(30)
def test_a_native_version_unloaded_while_its_call_runs_answers_503_not_a_runner_error(
    runners: list[FakeRunner], tmp_path: Path
) -> None:
    """Unloading stops the version's runner under a running call: the request it was routed
    to gets a 503 to send again (a RunnerError, a 500, before)."""
    settings = ServiceSettings(
        [native(tmp_path / "a", "1"), native(tmp_path / "b", "2")], {"1": 1.0, "2": 0.0}
    )
    service = Service(settings)
    runner = runners[1]
    runner.hold = threading.Event()

    async def scenario() -> None:
        answer = asyncio.ensure_future(service.predict("2", np.zeros((1, 2))))  # type: ignore[arg-type]
        while not runner.started.is_set():
            await asyncio.sleep(0.005)
        service.unload("2")
        assert runner.hold is not None
        runner.hold.set()
        await answer

    with pytest.raises(PayloadError) as caught:
        asyncio.run(scenario())
    assert caught.value.status == 503 and "'2' was unloaded" in str(caught.value)
    service.close()


def test_native_versions_score_off_the_event_loop(
    runners: list[FakeRunner], tmp_path: Path
) -> None:
    service = Service(ServiceSettings([native(tmp_path)], {"1": 1.0}))
    answer = service.predict("1", np.zeros((1, 2)))
    assert not isinstance(answer, served.Prediction)  # an awaitable of the thread pool
    answer.close()  # type: ignore[union-attr]  # a coroutine, never awaited here
    service.close()


def test_workers_get_the_isolation_with_the_settings(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    settings = ServiceSettings([native(tmp_path)], {"1": 1.0}, isolation="required")
    monkeypatch.setenv("MLOPS_SERVE_SETTINGS", settings_to_env(settings))
    assert settings_from_env().isolation == "required"


def test_the_flag_wins_over_train_isolation_which_wins_over_auto() -> None:
    class Train:
        isolation = "off"

    class Config:
        train = Train()

    assert command.runner_isolation("required", Config()) == "required"  # type: ignore[arg-type]
    assert command.runner_isolation(None, Config()) == "off"  # type: ignore[arg-type]
    assert command.runner_isolation(None, None) == "auto"


def test_required_without_a_sandbox_is_refused_naming_where_it_was_asked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import mlops_ci.sandbox as sandbox

    monkeypatch.setattr(sandbox, "probe", lambda: Isolation(None, "bwrap is not installed"))
    with pytest.raises(InputError, match=r"^--isolation: required, but bwrap is not installed"):
        command.checked_isolation("required", "required")
    with pytest.raises(InputError, match=r"^mlops.yaml: train.isolation: required, but bwrap"):
        command.checked_isolation("required", None)
    assert command.checked_isolation("auto", None) == "not isolated: bwrap is not installed"
    assert command.checked_isolation("off", "off") == "not isolated: train.isolation is off"


def test_the_serving_image_starts_serve_with_the_default_isolation() -> None:
    # auto: no bwrap in the image, so a plain child, the server undumpable before it starts
    from mlops_ci.packaging.context import ContextSpec, dockerfile

    spec = ContextSpec("m", "1", "run", "sklearn", "python:3.11-slim", 8080, None, None, wheel="w")
    (cmd,) = [line for line in dockerfile(spec, "digest").splitlines() if line.startswith("CMD")]
    assert '"serve"' in cmd and "--isolation" not in cmd


def test_an_onnx_package_answering_several_values_per_row_is_refused_at_its_load(
    tmp_path: Path,
) -> None:
    """A package of a multi-output regressor (made before package refused them): batch-score
    would keep its first value alone."""
    from onnx import TensorProto, helper

    from mlops_ci.evaluation.predictions import MultipleOutputs

    def package_of(width: int) -> ModelSpec:
        graph = helper.make_graph(
            [helper.make_node("Identity", ["input"], ["variable"])],
            "g",
            [helper.make_tensor_value_info("input", TensorProto.FLOAT, [None, width])],
            [helper.make_tensor_value_info("variable", TensorProto.FLOAT, [None, width])],
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        model.ir_version = 8
        folder = tmp_path / f"w{width}"
        folder.mkdir()
        (folder / "model.onnx").write_bytes(model.SerializeToString())
        features = tuple(f"x{i}" for i in range(width))
        return ModelSpec("m", "1", "onnx", folder, features, "sha")

    assert LoadedModel(package_of(1)).predict(np.ones((2, 1))).scores.shape == (2, 1)
    with pytest.raises(MultipleOutputs, match=r"model.onnx: the model predicts 2 outputs per row"):
        LoadedModel(package_of(2))


def test_a_version_runs_on_the_provider_asked_or_says_what_it_fell_back_to(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """package.providers travel in the manifest; serve.providers overrides them; a GPU asked
    for where onnxruntime has none is a warning naming the fallback and a metric."""
    import logging

    import onnxruntime as ort
    from onnx import TensorProto, helper

    from mlops_ci.serve.service import Service

    graph = helper.make_graph(
        [helper.make_node("Identity", ["input"], ["variable"])],
        "g",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [None, 1])],
        [helper.make_tensor_value_info("variable", TensorProto.FLOAT, [None, 1])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    (tmp_path / "model.onnx").write_bytes(model.SerializeToString())
    gpu = ("CUDAExecutionProvider", "CPUExecutionProvider")
    spec = ModelSpec("m", "1", "onnx", tmp_path, ("x",), "sha", providers=gpu)
    assert LoadedModel(spec).ran.requested == gpu
    assert LoadedModel(spec, providers=("CPUExecutionProvider",)).ran.fell_back is False
    settings = ServiceSettings([spec], {"1": 1.0}, providers=("OpenVINOExecutionProvider",))
    monkeypatch.setenv("MLOPS_SERVE_SETTINGS", settings_to_env(settings))
    assert settings_from_env().providers == ("OpenVINOExecutionProvider",)
    assert settings_from_env().models[0].providers == gpu
    if "CUDAExecutionProvider" in ort.get_available_providers():
        return  # the fallback below is this machine's (no CUDA in its onnxruntime)
    with caplog.at_level(logging.INFO, logger="mlops_ci.serve"):
        service = Service(ServiceSettings([spec], {"1": 1.0}))
    try:
        assert (
            "v1 runs on CPUExecutionProvider (asked for CUDAExecutionProvider: this onnxruntime "
            "has " in caplog.text
        )
        assert [r.levelname for r in caplog.records if "runs on" in r.message] == ["WARNING"]
        metric = (
            'mlops_execution_provider{model="m",provider="CPUExecutionProvider",'
            'requested="CUDAExecutionProvider",version="1"} 1.0'
        )
        assert metric in service.metrics.render().decode()
    finally:
        service.close()
