"""package with real skl2onnx, onnxruntime, MLflow (SQLite) and hadolint; Docker where it exists."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest

from mlops_ci.config.types import Config, load_config
from mlops_ci.errors import GateFailed, ServiceError
from mlops_ci.model.integrity import IntegrityError
from mlops_ci.packaging import convert, image
from mlops_ci.provenance import sha256_file
from mlops_ci.registry.mlflow import MlflowRegistry
from mlops_ci.runner import RemoteModel
from mlops_ci.steps import package as package_module
from mlops_ci.steps.compare import compare
from mlops_ci.steps.package import package
from mlops_ci.steps.register import register
from mlops_ci.steps.train import train
from tests.support.helpers import run_cli
from tests.support.snapshot import relocated
from tests.support.store import copy_example

pytestmark = pytest.mark.slow

FAST_PROFILE = "  profile: {single_row_runs: 50, batch_sizes: [1, 64]}\n"


def registered(project: Path, **params: Any) -> tuple[Config, MlflowRegistry]:
    """The example trained with ``params`` and registered as v1, with a quick profile."""
    (project / "mlops.yaml").write_text((project / "mlops.yaml").read_text() + FAST_PROFILE)
    config = load_config(project)
    reg = MlflowRegistry.for_config(config)
    run = train(config, reg, overrides=params)
    compare(config, reg, run.run_id)
    register(config, reg, run.run_id)
    return config, reg


@pytest.fixture(scope="module")
def registered_once(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example's own model registered as v1, once for the module (each test a copy)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        project = copy_example(tmp_path_factory.mktemp("registered") / "iris")
        registered(project)
    return project


@pytest.fixture
def project(registered_once: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the registered example of this test's own (its store names the copy)."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return relocated(registered_once, tmp_path / "iris")


def opened(project: Path) -> tuple[Config, MlflowRegistry]:
    config = load_config(project)
    return config, MlflowRegistry.for_config(config)


@pytest.mark.parametrize(
    "params", [{}, {"model": "forest", "n_estimators": 50}], ids=["logistic", "forest"]
)
def test_conversion_parity_profile_and_context(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest,
    params: dict[str, Any],
) -> None:  # fmt: skip
    if params:
        monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
        project = copy_example(tmp_path / "iris")
        config, reg = registered(project, **params)
    else:
        project = request.getfixturevalue("project")
        config, reg = opened(project)
    result = package(config, reg, "@candidate", build=False)
    assert result.format == "onnx" and result.note is None
    assert result.parity is not None and result.parity.passed
    assert result.parity.max_abs_diff < 1e-5 and result.parity.label_agreement == 1.0
    assert result.parity.rows == 60
    serving, native = result.profile.serving, result.profile.native
    assert native is not None and serving.engine == "onnxruntime"
    assert 0 < serving.p50_ms <= serving.p95_ms <= serving.p99_ms
    assert set(serving.rows_per_s) == {1, 64} and serving.peak_rss_mb > 10
    assert result.profile.session_options == {
        "intra_op_threads": 1,
        "graph_optimization_level": "all",
        "providers": "CPUExecutionProvider",
    }
    assert serving.provider == "CPUExecutionProvider"

    context = Path(result.context)
    assert context == project / ".mlops" / "package" / "iris-classifier-1"
    onnx_file = context / "model" / "model.onnx"
    assert sha256_file(onnx_file) == result.onnx_sha256
    tags = reg.get_version("iris-classifier", "1").tags
    assert tags["mlops.package.onnx_sha256"] == result.onnx_sha256
    assert tags["mlops.package.sha256"] == result.model_sha256
    assert tags["mlops.package.complete"] == "true"
    assert tags["mlops.package.recommended.cpu"].endswith("m")
    run = reg.get_run(result.run_id)
    assert run.metrics["latency_p95_ms"] == pytest.approx(serving.p95_ms)
    logged = {a.path for a in reg.client.list_artifacts(result.run_id, "package/v1")}
    assert logged == {"package/v1/model.onnx", "package/v1/manifest.json"}

    dockerfile = (context / "Dockerfile").read_text()
    lint = subprocess.run(["hadolint", str(context / "Dockerfile")], capture_output=True, text=True)
    assert lint.returncode == 0 and lint.stdout == "", lint.stdout
    users = re.findall(r"^USER (\S+)$", dockerfile, re.MULTILINE)
    assert users and users[-1] not in {"root", "0"}
    assert re.search(r"^HEALTHCHECK .*\n\s+CMD .*/v2/health/ready", dockerfile, re.MULTILINE)
    assert 'io.mlops-ci.model.sha256="' + result.model_sha256 + '"' in dockerfile
    requirements = (context / "requirements.txt").read_text().splitlines()
    assert requirements and all(re.match(r"^[\w.\[\]-]+==[\w.]+", r) for r in requirements)
    assert any(
        r.startswith("numpy==") and "not in the training lock" not in r for r in requirements
    )


def test_a_gpu_provider_asked_for_is_recorded_as_what_really_ran(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """No GPU here: onnxruntime runs the model on CPU. The profile, the tags, the CLI and the
    manifest say what was asked and what ran; the cuda image variant installs onnxruntime-gpu
    of the same version with NVIDIA's libraries from PyPI, and says so in its labels."""
    import onnxruntime

    config = project / "mlops.yaml"
    config.write_text(
        config.read_text().replace(
            "package:\n",
            "package:\n  providers: [CUDAExecutionProvider, CPUExecutionProvider]\n"
            "  accelerator: cuda\n",
        )
    )
    assert run_cli("package", "-c", str(project), "--version", "1", "--no-build") == 0
    out = capsys.readouterr().out
    fallback = "CPUExecutionProvider (asked for CUDAExecutionProvider: this onnxruntime has "
    assert f"; on {fallback}" in out
    tags = opened(project)[1].get_version("iris-classifier", "1").tags
    assert tags["mlops.package.provider"] == "CPUExecutionProvider"
    assert tags["mlops.package.provider.detail"].startswith(fallback)
    assert tags["mlops.package.accelerator"] == "cuda"  # its Kubernetes pods ask for a GPU
    context = project / ".mlops" / "package" / "iris-classifier-1"
    manifest = json.loads((context / "model" / "manifest.json").read_text())
    assert manifest["providers"] == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    for name in ("requirements.txt", "serving-requirements.txt"):
        lines = (context / name).read_text().splitlines()
        want = f"onnxruntime-gpu[cuda,cudnn]=={onnxruntime.__version__}"
        assert any(line.startswith(want) for line in lines), (name, lines)
        assert not any(line.startswith("onnxruntime==") for line in lines), name
    dockerfile = (context / "Dockerfile").read_text()
    assert 'io.mlops-ci.accelerator="cuda"' in dockerfile
    assert 'io.mlops-ci.providers="CUDAExecutionProvider,CPUExecutionProvider"' in dockerfile
    lint = subprocess.run(["hadolint", str(context / "Dockerfile")], capture_output=True, text=True)
    assert lint.returncode == 0, lint.stdout


def test_altered_onnx_graph_fails_parity_and_records_nothing(
    project: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    config, reg = opened(project)
    real = RemoteModel.to_onnx  # the conversion made in the model runner's child

    def altered(model: RemoteModel, features: Any, opset: int | None) -> tuple[bytes, str]:
        onnx_bytes, layout = real(model, features, opset)
        graph = onnx.load_from_string(onnx_bytes)
        (linear,) = [n for n in graph.graph.node if n.op_type == "LinearClassifier"]
        (coefficients,) = [a for a in linear.attribute if a.name == "coefficients"]
        coefficients.floats[0] += 0.5  # one weight of the first class, nudged
        return bytes(graph.SerializeToString()), layout

    monkeypatch.setattr(RemoteModel, "to_onnx", altered)
    with pytest.raises(
        GateFailed,
        match=r"ONNX parity failed: \d+ of 60 rows differ beyond \|native - onnx\| <= 0.001 "
        r"\+ 0.001·\|native\| \(package.parity_tolerance, package.parity_rtol\), 1 allowed "
        r"\(package.parity_max_row_share 0.02\).* worst: row \d+: native [\d.]+, onnx [\d.]+",
    ) as caught:
        package(config, reg, "1", build=False)
    assert "package.onnx: false" in str(caught.value.hint)
    assert not any(
        k.startswith("mlops.package.") for k in reg.get_version("iris-classifier", "1").tags
    )
    assert run_cli("package", "-c", str(project), "--version", "1", "--no-build") == 1
    assert "error: ONNX parity failed" in capsys.readouterr().err


def test_parity_check_names_the_worst_rows() -> None:
    native = convert.Outputs(
        np.array(["a", "b", "a"]), np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]])
    )
    onnx_out = convert.Outputs(
        np.array(["a", "a", "a"]), np.array([[0.9, 0.1], [0.55, 0.45], [0.6, 0.4]])
    )
    parity = convert.check_parity(native, onnx_out, convert.Tolerance(1e-5, 0.0, 0.0))
    assert not parity.passed and parity.differing_rows == 1
    assert parity.worst_rows[0] == (1, pytest.approx(0.35), 0.2, 0.55)
    assert parity.label_agreement == pytest.approx(2 / 3)
    # The same difference within a loose tolerance still fails: the label changed.
    assert not convert.check_parity(native, onnx_out, convert.Tolerance(0.5, 0.0, 0.0)).passed
    # One differing row in three passes only when a third of the rows may differ.
    assert convert.check_parity(native, onnx_out, convert.Tolerance(1e-5, 0.0, 0.34)).passed


def test_default_tolerance_is_relative_for_values_of_any_magnitude() -> None:
    tol = convert.Tolerance.for_task("regression", None, None, 0.0)
    values = np.array([[151.0], [25.0], [346.0]])
    rounded = values.astype(np.float32).astype(np.float64) + np.array([[3e-5], [0.0], [2e-4]])
    assert convert.check_parity(
        convert.Outputs(None, values), convert.Outputs(None, rounded), tol
    ).passed
    wrong = values + np.array([[0.0], [0.5], [0.0]])  # a real error on one row
    parity = convert.check_parity(convert.Outputs(None, values), convert.Outputs(None, wrong), tol)
    assert not parity.passed and parity.worst_rows[0][:2] == (1, pytest.approx(0.5))


def test_tampered_model_artifact_is_refused(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config, reg = opened(project)
    (stored,) = (project / ".mlops" / "artifacts" / "models").glob("m-*/artifacts/model.skops")
    stored.write_bytes(stored.read_bytes() + b"\0")
    with pytest.raises(IntegrityError, match="sha256 .* is not the recorded"):
        package(config, reg, "1", build=False)
    assert run_cli("package", "-c", str(project), "--version", "1", "--no-build") == 2
    assert "refusing to load it" in capsys.readouterr().err


def test_native_packaging_when_onnx_is_off(project: Path) -> None:
    config, reg = opened(project)
    text = (project / "mlops.yaml").read_text().replace("  onnx: true", "  onnx: false")
    (project / "mlops.yaml").write_text(text)
    result = package(load_config(project), reg, "1", build=False)
    assert result.format == "sklearn" and result.parity is None and result.onnx_sha256 is None
    assert "the native model is served" in (result.note or "")
    assert (Path(result.context) / "model" / "model.skops").is_file()
    assert "scikit-learn==" in (Path(result.context) / "requirements.txt").read_text()


@pytest.mark.parametrize("onnx_mode", ["true", "false"])
def test_the_native_model_is_loaded_only_in_the_model_runner(
    project: Path, monkeypatch: pytest.MonkeyPatch, onnx_mode: str
) -> None:
    """Conversion, parity, the served check, the profile's timings and its memory probe all
    ask the model runner's child: loading or pickling the model in mlops-ci's own process
    fails the test, and no pickle is written."""
    import joblib
    import skops.io

    from mlops_ci.model import files

    config, reg = opened(project)
    text = (project / "mlops.yaml").read_text().replace("  onnx: true", f"  onnx: {onnx_mode}")
    (project / "mlops.yaml").write_text(text)

    def refused(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a model file was loaded or pickled in mlops-ci's process")

    for module, name in [(skops.io, "load"), (skops.io, "loads"), (joblib, "load"),
                         (joblib, "dump"), (files, "load_folder")]:  # fmt: skip
        monkeypatch.setattr(module, name, refused)
    written: list[Path] = []
    real_write = Path.write_bytes
    monkeypatch.setattr(
        Path, "write_bytes", lambda self, data: written.append(self) or real_write(self, data)
    )
    result = package(load_config(project), reg, "1", build=False)
    assert result.format == ("onnx" if onnx_mode == "true" else "sklearn")
    native = result.profile.native if onnx_mode == "true" else result.profile.serving
    assert native is not None and native.engine == "sklearn"
    assert 0 < native.p50_ms <= native.p95_ms and set(native.rows_per_s) == {1, 64}
    assert native.peak_rss_mb > 10
    assert not [p for p in written if p.suffix in (".pickle", ".pkl", ".joblib")], written


def test_unknown_version_is_bad_input(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli("package", "-c", str(project), "--version", "7", "--no-build") == 2
    assert "has no version '7'" in capsys.readouterr().err


class _FakeImages:
    def __init__(self, fail: bool) -> None:
        self.fail, self.built, self.pushed = fail, [], []

    def build(self, **kwargs: Any) -> Any:
        if self.fail:
            from docker.errors import BuildError

            raise BuildError("boom", [{"stream": "Step 5/9"}, {"error": "pip failed"}])
        self.built.append(kwargs)
        return type("Image", (), {"id": "sha256:abc"})(), []

    def push(self, repository: str, tag: str, stream: bool, decode: bool) -> Any:
        self.pushed.append((repository, tag))
        return iter([{"status": "Pushed"}])


def test_build_and_push_through_the_docker_sdk_with_a_fake_engine(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    images = _FakeImages(fail=False)
    monkeypatch.setattr(image, "engine", lambda: (type("C", (), {"images": images})(), None))
    result = image.build_image(tmp_path, "ghcr.io/acme/iris:1", push=True)
    assert (result.status, result.image_id) == ("pushed", "sha256:abc")
    assert (
        images.built[0]["path"] == str(tmp_path) and images.built[0]["tag"] == "ghcr.io/acme/iris:1"
    )
    assert images.pushed == [("ghcr.io/acme/iris", "1")]
    monkeypatch.setattr(
        image, "engine", lambda: (type("C", (), {"images": _FakeImages(True)})(), None)
    )
    with pytest.raises(
        ServiceError, match="docker build of ghcr.io/acme/iris:1 failed: pip failed"
    ):
        image.build_image(tmp_path, "ghcr.io/acme/iris:1", push=False)


def test_without_an_engine_the_build_is_skipped_with_its_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    result = image.build_image(tmp_path, "x:1", push=False)
    assert result.status == "skipped"
    assert (result.reason or "").startswith(
        "no Docker engine reachable at unix:///nonexistent/docker.sock"
    )


def test_package_module_is_importable_without_skl2onnx_at_top_level() -> None:
    assert "skl2onnx" not in package_module.__dict__
