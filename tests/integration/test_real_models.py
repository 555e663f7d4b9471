"""The models data scientists bring, through every step: each example under examples/ is trained,
compared, registered, packaged (parity), served (v2 named inputs and /score) and batch-scored
against a real MLflow SQLite store and a real `mlops-ci serve` process."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
from jsonschema import Draft202012Validator

from mlops_ci.config.types import Config, load_config
from mlops_ci.registry.mlflow import MlflowRegistry
from mlops_ci.runner import ModelRunner
from mlops_ci.serve.model import ModelSpec, read_spec
from mlops_ci.steps.batch_score import batch_score
from mlops_ci.steps.compare import compare
from mlops_ci.steps.package import PackageResult, package
from mlops_ci.steps.register import register
from mlops_ci.steps.train import train
from tests.support.serve_helpers import assert_conforms, schemathesis, serving
from tests.support.store import copy_example

pytestmark = pytest.mark.slow

FAST_PROFILE = "  profile: {single_row_runs: 20, batch_sizes: [1, 64]}\n"
EXAMPLES = ["breast-cancer", "diabetes", "xgboost", "lightgbm", "onnx"]


def project_for(tmp_path: Path, example: str, package_lines: str = "") -> Config:
    project = copy_example(tmp_path / example, example)
    config_file = project / "mlops.yaml"
    config_file.write_text(config_file.read_text() + "package:\n" + package_lines + FAST_PROFILE)
    return load_config(project)


def evaluation(config: Config) -> tuple[pd.DataFrame, pd.Series]:
    data = pd.read_csv(config.resolve(config.evaluate.data))
    return data.drop(columns=[config.evaluate.target]), data[config.evaluate.target]


def native_predictions(reg: MlflowRegistry, config: Config, features: pd.DataFrame) -> Any:
    version = reg.get_version_by_alias(config.model.name, "candidate")
    assert version is not None
    with ModelRunner(config.train.isolation) as runner:
        return np.asarray(reg.load_model(version.source, runner).predict(features))


def same(served: list[Any], expected: Any, regression: bool) -> bool:
    if regression:
        return bool(np.allclose(served, expected, rtol=1e-4, atol=1e-4))
    return [str(v) for v in served] == [str(v) for v in expected]


def v2_columns(features: pd.DataFrame, binary: bool) -> list[Any]:
    """One tritonclient input per column: BYTES for text, FP32 for numbers."""
    import tritonclient.http as triton

    inputs = []
    for name in features.columns:
        column = features[name]
        if column.dtype.kind in "biuf":
            values = column.to_numpy(np.float32).reshape(-1, 1)
            tensor = triton.InferInput(name, list(values.shape), "FP32")
        else:
            values = column.astype(str).to_numpy(dtype=object).reshape(-1, 1)
            tensor = triton.InferInput(name, list(values.shape), "BYTES")
        tensor.set_data_from_numpy(values, binary_data=binary)
        inputs.append(tensor)
    return inputs


@dataclass(frozen=True)
class Chain:
    """An example trained, compared, registered and packaged (ONNX, parity passed)."""

    config: Config
    reg: MlflowRegistry
    packaged: PackageResult
    spec: ModelSpec
    features: pd.DataFrame  # the evaluation rows
    expected: Any  # the native model's predictions of them


def chain_of(tmp_path: Path, example: str) -> Chain:
    config = project_for(tmp_path, example)
    reg = MlflowRegistry.for_config(config)
    run = train(config, reg)
    assert compare(config, reg, run.run_id).verdict == "no-baseline"
    version = register(config, reg, run.run_id).version
    packaged = package(config, reg, version, build=False)
    assert packaged.format == "onnx" and packaged.parity is not None and packaged.parity.passed
    spec = read_spec(Path(packaged.context))
    features, _ = evaluation(config)
    assert spec.features == tuple(features.columns)
    return Chain(config, reg, packaged, spec, features, native_predictions(reg, config, features))


@pytest.fixture(scope="module")
def chains(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[str], Chain]]:
    """Each example's chain, made once for the module by the first test asking for it (the
    breast-cancer one serves the input-log test too)."""
    made: dict[str, Chain] = {}
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)

        def chain(example: str) -> Chain:
            if example not in made:
                made[example] = chain_of(tmp_path_factory.mktemp(example), example)
            return made[example]

        yield chain


@pytest.mark.parametrize("example", EXAMPLES)
def test_example_trains_compares_registers_packages_serves_and_batch_scores(
    example: str, tmp_path: Path, chains: Callable[[str], Chain]
) -> None:
    import tritonclient.http as triton

    made = chains(example)
    config, reg, packaged, spec = made.config, made.reg, made.packaged, made.spec
    features, expected = made.features, made.expected
    regression = config.model.task == "regression"

    rows = features.head(8)
    with serving("--model-dir", packaged.context, cwd=config.root) as srv:
        records = httpx.post(f"{srv.url}/score", json={"inputs": rows.to_dict("records")})
        assert records.status_code == 200, records.text
        assert same(records.json()["predictions"], expected[:8], regression)
        split = httpx.post(
            f"{srv.url}/score",
            json={"dataframe_split": {"columns": list(rows.columns), "data": rows.values.tolist()}},
        )
        assert split.json()["predictions"] == records.json()["predictions"]
        if not regression:
            assert records.json()["classes"] == sorted({str(v) for v in expected})
        documented = Draft202012Validator(
            httpx.get(f"{srv.url}/openapi.json").json()["paths"]["/score"]["post"]["requestBody"][
                "content"
            ]["application/json"]["schema"]
        )
        documented.validate({"inputs": rows.to_dict("records")})
        assert not documented.is_valid({"inputs": [rows.iloc[0].tolist()[:-1]]})  # a column short
        if spec.schema.nullable:  # a pipeline that imputes: a missing number is scored
            holed = rows.head(2).astype(object).to_dict("records")
            holed[0][spec.schema.nullable[0]] = None
            documented.validate({"inputs": holed})
            answer = httpx.post(f"{srv.url}/score", json={"inputs": holed})
            assert answer.status_code == 200, answer.text
            frame = rows.head(2).copy()
            frame.loc[frame.index[0], spec.schema.nullable[0]] = np.nan
            assert same(
                answer.json()["predictions"], native_predictions(reg, config, frame), regression
            )
        if example == "breast-cancer":  # text and imputed columns: documented and held to
            assert_conforms(schemathesis(srv.url, tmp_path))
        client = triton.InferenceServerClient(url=srv.url.removeprefix("http://"))
        output = "label" if not regression else "variable"
        for binary in (False, True):
            result = client.infer(
                config.model.name,
                v2_columns(rows, binary),
                outputs=[triton.InferRequestedOutput(output, binary_data=False)],
            )
            got = result.as_numpy(output)
            assert got is not None
            got_list = [v.decode() if isinstance(v, bytes) else v for v in got.ravel().tolist()]
            assert same(got_list, expected[:8], regression)
        client.close()

    out = tmp_path / "scored.parquet"
    result = batch_score(spec, config.resolve(config.evaluate.data), out, processes=1)
    assert result.scored == len(features) and result.rejected == 0
    scored = pd.read_parquet(out)
    assert same(scored["prediction"].tolist(), expected, regression)
    # An imputer in the pipeline, or trees that route missing values (XGBoost, LightGBM).
    imputes = example in ("breast-cancer", "xgboost", "lightgbm")
    assert imputes == bool(spec.schema.nullable), spec.schema
    if spec.schema.nullable:
        holed = pd.read_csv(config.resolve(config.evaluate.data))
        holed.loc[0, spec.schema.nullable[0]] = np.nan
        holed.to_csv(tmp_path / "holed.csv", index=False)
        again = batch_score(spec, tmp_path / "holed.csv", tmp_path / "holed.parquet", processes=1)
        assert again.scored == len(features) and again.rejected == 0


def test_native_pipeline_with_a_text_column_serves_dataframe_input(tmp_path: Path) -> None:
    config = project_for(tmp_path, "breast-cancer", "  onnx: false\n")
    reg = MlflowRegistry.for_config(config)
    run = train(config, reg, overrides={"model": "forest", "n_estimators": 20})
    compare(config, reg, run.run_id)
    packaged = package(config, reg, register(config, reg, run.run_id).version, build=False)
    assert packaged.format == "sklearn" and packaged.profile.serving.peak_rss_mb > 10
    features, _ = evaluation(config)
    expected = native_predictions(reg, config, features.head(5))
    with serving("--model-dir", packaged.context, cwd=config.root) as srv:
        answer = httpx.post(
            f"{srv.url}/score", json={"dataframe_records": features.head(5).to_dict("records")}
        )
        assert answer.status_code == 200, answer.text
        assert answer.json()["predictions"] == [str(v) for v in expected]
        wrong = features.head(1).to_dict("records")
        wrong[0]["size_bin"] = 3
        refused = httpx.post(f"{srv.url}/score", json={"inputs": wrong})
        assert refused.status_code == 422
        assert "'size_bin' in row 0 must be text" in refused.json()["error"]
        # a float32 value the scaler divides past float32: the model's refusal, as a 4xx
        huge = features.head(1).to_dict("records")
        huge[0]["mean_smoothness"] = -3.4e38  # its spread is about 0.01
        overflow = httpx.post(f"{srv.url}/score", json={"inputs": huge})
        assert overflow.status_code == 422, overflow.text
        assert "the model cannot score these values" in overflow.json()["error"]
    assert "Traceback" not in srv.log()


def test_text_column_reaches_the_input_log_and_drift(
    tmp_path: Path, chains: Callable[[str], Chain]
) -> None:
    """The breast-cancer example's package served with the input log on (a project of its
    own: the settings and the log), then drift against the training data."""
    from mlops_ci.serve.inputlog import read_records
    from mlops_ci.steps.drift import drift

    packaged = chains("breast-cancer").packaged
    config = project_for(tmp_path, "breast-cancer")
    config.path.write_text(
        config.path.read_text()
        + "monitor:\n  collect: true\n  flush_seconds: 0.1\n  drift: {reference: data/train.csv}\n"
    )
    config = load_config(config.root)
    features, _ = evaluation(config)
    with serving("--model-dir", packaged.context, "-c", str(config.root), cwd=config.root) as srv:
        for start in range(0, len(features), 40):
            rows = features.iloc[start : start + 40].to_dict("records")
            assert httpx.post(f"{srv.url}/score", json={"inputs": rows}).status_code == 200
    logged = list(read_records(config.resolve(config.monitor.log_dir)))
    assert len(logged) == len(features)
    assert [r["inputs"]["size_bin"] for r in logged] == features["size_bin"].tolist()
    result = drift(config)
    by_name = {f.name: f for f in result.features}
    assert by_name["size_bin"].kind == "categorical" and not by_name["size_bin"].drifted
