"""mlops.yaml as a file: every problem on one line with its file, line and key; defaults from
the schema; the validated-config cache."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlops_ci.config.file import schema
from mlops_ci.config.types import load_config
from mlops_ci.errors import ConfigError
from mlops_ci.metrics import METRICS
from tests.support.configs import VALID, problems, write
from tests.support.slices import NOT_WORSE, grouped_project


def test_minimal_file_gets_schema_defaults(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, VALID))
    assert config.model.flavor == "sklearn"
    assert config.train.model_output == "outputs/model.joblib"
    assert config.evaluate.metrics == ("accuracy",)
    assert config.gate.primary_metric == "accuracy"
    assert config.gate.significance == 0.05
    assert config.registry.experiment == "demo"
    assert config.registry.tracking_uri == "sqlite:///.mlops/mlflow.db"


def test_unknown_key_names_line_and_suggests(tmp_path: Path) -> None:
    text = VALID.replace("  target: label\n", "  target: label\n  metrix: [accuracy]\n")
    assert problems(tmp_path, text) == [
        "mlops.yaml:8: evaluate.metrix: unknown key (did you mean 'metrics'?)"
    ]


def test_wrong_type_and_missing_key_each_get_a_line(tmp_path: Path) -> None:
    text = VALID.replace("model: {name: demo}", "model: {flavor: sklearn}").replace(
        "  command: python train.py", "  command: python train.py\n  timeout_minutes: soon"
    )
    assert problems(tmp_path, text) == [
        "mlops.yaml:2: model.name: required key is missing",
        "mlops.yaml:5: train.timeout_minutes: 'soon' is not of type 'number'",
    ]


def test_bad_enum_in_list_item(tmp_path: Path) -> None:
    text = VALID + "  metrics: [accuracy, auc]\n"
    (line,) = problems(tmp_path, text)
    assert line.startswith("mlops.yaml:8: evaluate.metrics.1: 'auc' is not one of")


def test_yaml_syntax_error_has_line(tmp_path: Path) -> None:
    (line,) = problems(tmp_path, VALID + "gate: {rules: [\n")
    assert line.startswith("mlops.yaml:") and "YAML syntax error" in line
    assert line.split(":")[1].isdigit()


def test_missing_file_hints_init(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(tmp_path)
    assert "no such file" in str(err.value)
    assert err.value.hint and "mlops-ci init" in err.value.hint


def test_cross_key_checks(tmp_path: Path) -> None:
    text = VALID + "gate:\n  primary_metric: f1_macro\n  rules:\n    - {metric: train_seconds}\n"
    assert problems(tmp_path, text) == [
        "mlops.yaml:9: gate.primary_metric: 'f1_macro' is not in evaluate.metrics ['accuracy']",
        "mlops.yaml:11: gate.rules.0: rule for 'train_seconds' sets no bound "
        "(min, max, must, min_absolute_change, min_relative_change, max_increase, "
        "max_decrease)",
    ]


def test_cost_rules_are_known_and_a_near_miss_is_named(tmp_path: Path) -> None:
    """compare measures the costs itself: their direction is known, their typos are caught."""
    rules = (
        "    - {metric: latency_p99_ms, max_increase: 0.25}\n"
        "    - {metric: rows_per_s, max_decrease: 0.2}\n"
        "    - {metric: model_size_mb, max: 200, must: not_worse_than_production}\n"
    )
    gate = load_config(write(tmp_path, VALID + "gate:\n  rules:\n" + rules)).gate
    assert [r.max_increase for r in gate.rules] == [0.25, None, None]
    assert [r.max_decrease for r in gate.rules] == [None, 0.2, None]
    typo = "gate:\n  rules:\n    - {metric: latency_p99, max_increase: 0.25}\n"
    assert problems(tmp_path, VALID + typo) == [
        "mlops.yaml:10: gate.rules.0.metric: 'latency_p99' is not a cost compare measures; "
        "did you mean 'latency_p99_ms'? (a metric your training logs: declare it in "
        "train.metrics)"
    ]
    sliced = "  slices: [x]\ngate:\n  rules:\n    - {metric: peak_rss_mb, max: 500, slice: all}\n"
    (line,) = problems(tmp_path, VALID + sliced)
    assert "slice: all does not apply to 'peak_rss_mb'" in line


def test_unknown_metric_against_production_needs_direction(tmp_path: Path) -> None:
    text = (
        VALID + "gate:\n  rules:\n    - {metric: train_seconds, must: not_worse_than_production}\n"
    )
    (line,) = problems(tmp_path, text)
    assert line.startswith("mlops.yaml:10: gate.rules.0.greater_is_better: needed")


def test_every_schema_key_has_description_and_default() -> None:
    def walk(node: dict[str, Any], path: str, required: list[str]) -> None:
        for key, prop in node.get("properties", {}).items():
            where = f"{path}.{key}".lstrip(".")
            assert prop.get("description"), f"{where} has no description"
            optional_without_default = key not in required and "default" not in prop
            is_rule_bound = ".rules" in where  # a rule's bounds are absent unless set
            assert not optional_without_default or is_rule_bound, f"{where} has no default"
            walk(prop, where, prop.get("required", []))
            if "items" in prop:
                walk(prop["items"], f"{where}[]", prop["items"].get("required", []))

    walk(schema(), "", schema()["required"])


def test_schema_metric_names_match_the_metrics_module() -> None:
    names = schema()["properties"]["evaluate"]["properties"]["metrics"]["items"]["enum"]
    assert set(names) == set(METRICS)


def test_metrics_must_fit_the_task(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        VALID.replace("model: {name: demo}", "model: {name: demo, task: regression}")
        + "  metrics: [rmse, accuracy]\ngate:\n  rules:\n    - {metric: f1_macro, min: 0.5}\n",
    )
    assert found == [
        "mlops.yaml:8: evaluate.metrics.1: 'accuracy' is a classification metric; model.task "
        "is regression (use mae, mse, rmse, r2)",
        "mlops.yaml:11: gate.rules.0.metric: 'f1_macro' is a classification metric; model.task "
        "is regression",
    ]


def test_gate_rules_on_run_metrics_must_be_declared_when_train_metrics_is(
    tmp_path: Path,
) -> None:
    text = VALID.replace(
        "  command: python train.py\n", "  command: python train.py\n  metrics: [cv_accuracy]\n"
    )
    rules = "gate:\n  rules:\n    - {metric: cv_acuracy, min: 0.5}\n"
    (found,) = problems(tmp_path, text + rules)
    assert found.endswith(
        "gate.rules.0.metric: 'cv_acuracy' is neither a known metric, a cost (latency_p50_ms, "
        "latency_p95_ms, latency_p99_ms, rows_per_s, peak_rss_mb, model_size_mb) nor in "
        "train.metrics ['cv_accuracy']; did you mean 'cv_accuracy'?"
    )
    load_config(write(tmp_path, text + rules.replace("cv_acuracy", "cv_accuracy")))
    load_config(write(tmp_path, VALID + rules))  # nothing declared: any run metric


@pytest.mark.parametrize(
    ("raw", "says"),
    [
        (VALID.encode() + "# caf\xe9\n".encode("latin-1"), "mlops.yaml:8: not UTF-8 text"),
        (VALID.encode("utf-16"), "mlops.yaml:1: not UTF-8 text"),
        (VALID.encode() + b"1: foo\n", "mlops.yaml:8: 1: unknown key"),
        (VALID.encode() + b"null: foo\n", "None: unknown key"),
        (VALID.encode() + b"x: " + b"[" * 600 + b"]" * 600 + b"\n", "nested too deeply"),
        (VALID.replace("version: 1", "version: 1" + "0" * 400).encode(), "401-digit integer"),
        (VALID.replace("version: 1", "version: 1" + "0" * 5000).encode(), "5001-digit integer"),
        (VALID.replace("version: 1", "version: !!int abc").encode(), "'abc' is not an integer"),
        (VALID.encode() + b"gate: {significance: .nan}\n", "mlops.yaml:8: '.nan' is not a finite"),
        (VALID.encode() + b"monitor: {flush_seconds: .inf}\n", "'.inf' is not a finite number"),
        (VALID.replace("python train.py", '"   "').encode(), "train.command: '   ' must be"),
        (VALID.replace("python train.py", '"a\\0b"').encode(), "no NUL byte"),
        (VALID.replace("python train.py", "x" * 20_000).encode(), "is too long"),
        (VALID.encode() + b'registry: {tracking_uri: "foo://bar"}\n', "MLflow tracking URI"),
        (VALID.encode() + b'registry: {tracking_uri: ""}\n', "MLflow tracking URI"),
        (VALID.encode() + b"registry: {experiment: " + b"e" * 10_000 + b"}\n", "is too long"),
        (VALID.replace("train:\n", "train:\n  params: {1.5: 2}\n").encode(), "'1.5' param names"),
        (VALID.replace("train:\n", "train:\n  params: {a-b: 2}\n").encode(), "'a-b' param names"),
        (VALID.encode() + b"model: {name: other}\n", "mlops.yaml:8: key 'model' is given twice"),
        (VALID.replace("label\n", "label\n  target: y\n").encode(), "(first on line 7)"),
        (VALID.encode() + b"x: {a: 1, a: 2}\n", "mlops.yaml:8: key 'a' is given twice"),
    ],
)
def test_malformed_files_are_one_line_each_never_a_crash(
    tmp_path: Path, raw: bytes, says: str
) -> None:
    (tmp_path / "mlops.yaml").write_bytes(raw)
    with pytest.raises(ConfigError) as err:
        load_config(tmp_path / "mlops.yaml")
    assert any(says in p for p in err.value.problems), err.value.problems
    assert all("\n" not in p and len(p) < 400 for p in err.value.problems)


def test_many_unknown_keys_are_capped_and_linear(tmp_path: Path) -> None:
    """16,000 unknown keys: 20 located with their line, the rest counted (it took 4.4 s, and a
    6.5 MB file never finished, when each key was looked up in the whole file)."""
    text = VALID + "".join(f"k{i}: 1\n" for i in range(16_000))
    found = problems(tmp_path, text)
    assert len(found) == 21 and found[-1] == "mlops.yaml: ... and 15980 more unknown keys"
    assert found[0].startswith("mlops.yaml:8: k0: unknown key")


@settings(max_examples=150, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(
    st.lists(
        st.tuples(st.integers(0, len(VALID)), st.text(max_size=12) | st.binary(max_size=6)),
        max_size=4,
    )
)
def test_any_mutation_of_a_valid_file_loads_or_is_a_config_error(
    edits: list[tuple[int, str | bytes]],
) -> None:
    """Fuzzed mlops.yaml: every file either loads or is a ConfigError (exit 2), never another
    exception (exit 4)."""
    import tempfile

    raw = VALID.encode()
    for at, insert in edits:
        piece = insert if isinstance(insert, bytes) else insert.encode("utf-8", "surrogatepass")
        raw = raw[:at] + piece + raw[at:]
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "mlops.yaml").write_bytes(raw)
        try:
            load_config(Path(tmp) / "mlops.yaml")
        except ConfigError as err:
            assert err.problems and all(p.strip() for p in err.problems)


def test_a_text_found_valid_is_not_validated_again_and_any_change_is(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The validated-config cache: the same text skips jsonschema (the tenth of a second each
    verb paid), a changed text is validated in full, an invalid one is never remembered."""
    import jsonschema

    monkeypatch.setenv("MLOPS_CI_CACHE_DIR", str(tmp_path / "cache"))
    real = jsonschema.Draft202012Validator
    built: list[int] = []

    def counting(*args: Any, **kwargs: Any) -> Any:
        built.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(jsonschema, "Draft202012Validator", counting)
    first = load_config(write(tmp_path, VALID))
    assert built == [1]
    assert load_config(tmp_path / "mlops.yaml") == first and built == [1]
    assert len(list((tmp_path / "cache" / "valid-configs").iterdir())) == 1

    broken = VALID.replace("model: {name: demo}", "model: {name: demo, colour: red}")
    assert problems(tmp_path, broken)[0].startswith("mlops.yaml:2: model.colour: unknown key")
    assert problems(tmp_path, broken)[0].startswith("mlops.yaml:2: model.colour: unknown key")
    assert len(list((tmp_path / "cache" / "valid-configs").iterdir())) == 1  # not remembered

    monkeypatch.setenv("MLOPS_CI_CACHE_DIR", str(tmp_path / "cache" / "valid-configs" / "x"))
    (tmp_path / "cache" / "valid-configs" / "x").write_text("")  # unwritable: a file, not a dir
    assert load_config(write(tmp_path, VALID)) == first  # validated, the cache skipped quietly


@pytest.mark.timeout(120)
def test_slice_all_needs_slices_and_an_evaluated_metric(tmp_path: Path) -> None:
    from mlops_ci.errors import ConfigError

    config, _, _ = grouped_project(tmp_path, NOT_WORSE + ", slice: all}")
    text = config.path.read_text()
    config.path.write_text(
        text.replace(" slices: [group]", "").replace("accuracy, must", "f1, must")
    )
    with pytest.raises(ConfigError) as err:
        load_config(tmp_path)
    joined = "\n".join(err.value.problems)
    assert "slice: all needs a metric of evaluate.metrics" in joined
    assert "evaluate.slices names no column" in joined


@pytest.mark.timeout(60)
def test_an_output_that_is_or_holds_an_input_is_refused_at_its_line(tmp_path: Path) -> None:
    text = VALID.replace(
        "  command: python train.py\n",
        "  command: python train.py\n  inputs: [data/, train.py]\n"
        "  outputs: {model: data/model.joblib, metrics: ./train.py}\n",
    )
    rule = "train never deletes or overwrites a file that is not its own output"
    assert problems(tmp_path, text) == [
        "mlops.yaml:6: train.outputs.model: 'data/model.joblib' is inside train.inputs.0 "
        f"'data/' (line 5): {rule}; give the outputs paths of their own",
        "mlops.yaml:6: train.outputs.metrics: './train.py' is also train.inputs.1 'train.py' "
        f"(line 5): {rule}; give the outputs paths of their own",
    ]
    # the default outputs/ is refused too, at the line of what it would overwrite
    lines = problems(tmp_path, VALID.replace("  data: data/test.csv", "  data: outputs"))
    assert [line.split(" (line")[0] for line in lines] == [
        "mlops.yaml:6: train.outputs.model: 'outputs/model.joblib' is inside evaluate.data "
        "'outputs'",
        "mlops.yaml:6: train.outputs.metrics: 'outputs/metrics.json' is inside evaluate.data "
        "'outputs'",
    ]
    holds = VALID.replace(
        "  command: python train.py\n",
        "  command: python train.py\n  outputs: {model: out}\n  inputs: [out/base.csv]\n",
    )
    (line,) = problems(tmp_path, holds)
    assert line.startswith("mlops.yaml:5: train.outputs.model: 'out' holds train.inputs.0")
    fine = VALID.replace("  command: python train.py\n", "  command: x\n  inputs: [data/a.csv]\n")
    assert load_config(write(tmp_path, fine)).train.inputs == ("data/a.csv",)


@pytest.mark.timeout(60)
def test_a_shadow_and_a_live_requirement_per_environment(tmp_path: Path) -> None:
    local = VALID + (
        "deploy:\n  production:\n    target: local\n"
        "    shadow: {version: '@candidate', percent: 25}\n    require_live: {min_rows: 500}\n"
    )
    env = load_config(write(tmp_path, local)).deploy["production"]
    assert env.shadow is not None and (env.shadow.version, env.shadow.percent) == ("@candidate", 25)
    assert env.require_live_rows == 500
    docker = local.replace("target: local", "target: docker")
    assert problems(tmp_path, docker) == [
        "mlops.yaml:11: deploy.production.shadow: the docker target cannot mirror requests yet "
        "(only target: local; or `mlops-ci serve --shadow`)"
    ]
    assert "percent" in problems(tmp_path, local.replace("percent: 25", "percent: 0"))[0]
    assert "version" in problems(tmp_path, local.replace("'@candidate'", "'latest'"))[0]


def test_package_providers_are_onnxruntimes_names_best_first(tmp_path: Path) -> None:
    package = "package:\n  providers: [CUDAExecutionProvider, CPUExecutionProvider]\n"
    config = load_config(write(tmp_path, VALID + package + "  accelerator: cuda\n"))
    assert config.package.providers == ("CUDAExecutionProvider", "CPUExecutionProvider")
    assert config.package.accelerator == "cuda"
    assert load_config(write(tmp_path, VALID)).package.providers == ("CPUExecutionProvider",)
    typo = "package:\n  providers: [CudaExecutionProvider]\n"
    assert problems(tmp_path, VALID + typo) == [
        "mlops.yaml:9: package.providers.0: 'CudaExecutionProvider' is not an onnxruntime "
        "execution provider; did you mean 'CUDAExecutionProvider'?"
    ]
    (line,) = problems(tmp_path, VALID + "package:\n  providers: [gpu]\n")
    assert line.startswith("mlops.yaml:9: package.providers.0: 'gpu' does not match")
