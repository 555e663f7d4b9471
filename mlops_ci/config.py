"""mlops.yaml → frozen dataclasses, validated against the JSON Schema shipped in the package.

The schema is the single definition of the file: its ``default`` values fill missing keys here, so
no default is written twice. Every problem is reported as ``FILE:LINE: path.to.key: message``.
"""

from __future__ import annotations

import copy
import difflib
import hashlib
import json
import math
import os
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from mlops_ci.errors import ConfigError
from mlops_ci.metrics import COST_METRICS, METRICS

CONFIG_NAME = "mlops.yaml"
# Unknown keys reported one by one (with their line and a did-you-mean); the rest are counted.
MAX_UNKNOWN_KEYS = 20
# Rule keys that compare the candidate with production; the directional ones need to know
# whether more is better (max_increase and max_decrease say which way themselves).
AGAINST_PRODUCTION = (
    "must", "min_absolute_change", "min_relative_change", "max_increase", "max_decrease",
)  # fmt: skip
DIRECTIONAL = ("must", "min_absolute_change", "min_relative_change")
Scalar = str | int | float | bool


@dataclass(frozen=True)
class ModelConfig:
    name: str
    flavor: str
    task: str


@dataclass(frozen=True)
class TrainConfig:
    command: str
    inputs: tuple[str, ...]
    params: dict[str, Scalar]
    model_output: str
    metrics_output: str
    declared_metrics: tuple[str, ...]  # train.metrics: what the command writes, when declared
    timeout_minutes: float
    cache: bool
    # train.outputs.metrics written in the file: the command must then write that file
    metrics_output_set: bool = True


@dataclass(frozen=True)
class PipelineConfig:
    """pipeline: the stages as written in mlops.yaml (checked and ordered by ``stagespec``), or
    the DVC file that has them."""

    stages: tuple[dict[str, Any], ...] = ()
    dvc: str | None = None

    @property
    def enabled(self) -> bool:
        return bool(self.stages) or self.dvc is not None


@dataclass(frozen=True)
class ImportanceConfig:
    enabled: bool = True
    repeats: int = 5
    sample_rows: int = 2000
    top: int = 10
    max_seconds: float = 10.0


@dataclass(frozen=True)
class EvaluateConfig:
    data: str
    target: str
    features: tuple[str, ...]
    metrics: tuple[str, ...]
    slices: tuple[str, ...] = ()
    slice_bins: int = 4
    slice_max: int = 20
    importance: ImportanceConfig = ImportanceConfig()


@dataclass(frozen=True)
class Rule:
    """One gate rule; see the schema for the meaning of each field."""

    metric: str
    min: float | None = None
    max: float | None = None
    must: str | None = None
    tolerance: float = 0.0
    min_absolute_change: float | None = None
    min_relative_change: float | None = None
    max_increase: float | None = None  # candidate / production − 1 at most this
    max_decrease: float | None = None  # 1 − candidate / production at most this
    greater_is_better: bool | None = None
    slice: str | None = None  # "all": the rule holds in every slice of evaluate.slices

    @property
    def against_production(self) -> bool:
        return (
            self.must is not None
            or self.min_absolute_change is not None
            or self.min_relative_change is not None
            or self.max_increase is not None
            or self.max_decrease is not None
        )


@dataclass(frozen=True)
class CostConfig:
    """How compare measures the costs a gate rule names (gate.cost)."""

    rounds: int = 7
    round_seconds: float = 0.3
    batch_rows: int = 1000


@dataclass(frozen=True)
class GateConfig:
    rules: tuple[Rule, ...]
    primary_metric: str
    significance: float
    require_improvement: bool
    bootstrap_samples: int
    seed: int
    min_slice_rows: int = 30
    cost: CostConfig = CostConfig()

    @property
    def cost_rules(self) -> bool:
        """Whether a rule names a cost (then compare measures both models' costs)."""
        return any(rule.metric in COST_METRICS for rule in self.rules)


@dataclass(frozen=True)
class RegistryConfig:
    tracking_uri: str
    artifact_location: str
    experiment: str
    production_alias: str
    candidate_alias: str


@dataclass(frozen=True)
class ProfileConfig:
    single_row_runs: int
    batch_sizes: tuple[int, ...]
    intra_op_threads: int
    graph_optimization_level: str


@dataclass(frozen=True)
class PackageConfig:
    onnx: str  # auto | true | false (package.onnx)
    parity_tolerance: float | None  # absolute; None: the task's default
    parity_rtol: float | None
    parity_max_row_share: float
    target_opset: int | None
    image: str | None
    push: bool
    base_image: str
    port: int
    profile: ProfileConfig

    @property
    def converts(self) -> bool:
        """ONNX is tried (auto or true)."""
        return self.onnx != "false"

    @property
    def onnx_required(self) -> bool:
        """A refused conversion or failed parity is an error, not a fall-back (true)."""
        return self.onnx == "true"


@dataclass(frozen=True)
class ServeConfig:
    host: str
    port: int
    workers: int
    intra_op_threads: int
    max_payload_bytes: int
    max_batch_rows: int
    graceful_timeout_s: float
    admin_token_env: str
    access_log: bool
    read_timeout_s: float = 30.0


@dataclass(frozen=True)
class DriftConfig:
    reference: str
    current: str | None
    features: tuple[str, ...]
    psi_threshold: float
    p_value: float
    test: str  # psi | test | both
    max_drifted_share: float
    bins: int
    sample_size: int
    chunk_rows: int
    seed: int
    min_rows: int


@dataclass(frozen=True)
class MonitorConfig:
    collect: bool
    log_dir: str
    format: str  # jsonl | parquet
    flush_rows: int
    flush_seconds: float
    rotate_mb: float
    drift: DriftConfig
    durable: bool = False  # answer only once the rows are on disk


@dataclass(frozen=True)
class Webhook:
    url: str
    events: tuple[str, ...]
    secret_env: str | None
    timeout_s: float
    retries: int


@dataclass(frozen=True)
class NotifyConfig:
    webhooks: tuple[Webhook, ...]
    dispatch_events: tuple[str, ...]
    dispatch_repository: str | None
    fail_on_error: bool


@dataclass(frozen=True)
class RolloutConfig:
    mode: str  # canary | ab
    steps: tuple[float, ...]
    window_seconds: float
    probe_requests: int
    min_requests: int
    max_error_rate: float
    max_p99_ratio: float
    max_p99_ms: float


@dataclass(frozen=True)
class KubernetesConfig:
    namespace: str
    serving: str  # deployment | kserve
    replicas: int
    max_replicas: int
    target_cpu_percent: int
    output_dir: str


@dataclass(frozen=True)
class DeployEnv:
    """One deployment environment of mlops.yaml's ``deploy`` map."""

    name: str
    target: str  # local | docker | kubernetes
    host: str
    port: int
    approval: str  # required | none
    require_comparison: bool
    require_pr_review: bool
    github_environment: str
    alias: str
    rollout: RolloutConfig
    kubernetes: KubernetesConfig
    restart_policy: str
    egress: bool = False  # docker: the version network is internal unless set


@dataclass(frozen=True)
class Config:
    """A validated mlops.yaml; ``root`` is its folder, against which relative paths resolve."""

    path: Path
    model: ModelConfig
    train: TrainConfig
    evaluate: EvaluateConfig
    gate: GateConfig
    registry: RegistryConfig
    package: PackageConfig
    serve: ServeConfig
    monitor: MonitorConfig
    deploy: dict[str, DeployEnv]
    notify: NotifyConfig
    pipeline: PipelineConfig = PipelineConfig()

    @property
    def root(self) -> Path:
        return self.path.parent

    def resolve(self, relative: str) -> Path:
        return (self.root / relative).resolve()


@cache
def _schema_text() -> str:
    return resources.files("mlops_ci").joinpath("schema/mlops.schema.json").read_text("utf-8")


@cache
def schema() -> dict[str, Any]:
    """The JSON Schema of mlops.yaml, read from the package."""
    loaded: dict[str, Any] = json.loads(_schema_text())
    return loaded


def find_config(path: str | Path | None) -> Path:
    """The mlops.yaml to use: the given file, or mlops.yaml inside the given/current folder."""
    candidate = Path(path) if path else Path.cwd()
    if candidate.is_dir():
        candidate = candidate / CONFIG_NAME
    try:
        return candidate.resolve()
    except (RuntimeError, OSError) as err:  # a symlink loop (RuntimeError before Python 3.13)
        raise ConfigError([f"{candidate}: cannot be resolved: {err}"]) from None


def load_config(path: str | Path | None = None) -> Config:
    """Read, validate and type mlops.yaml; raise ConfigError with one line per problem."""
    file = find_config(path)
    if not file.is_file():
        raise ConfigError(
            [f"{file.name}: no such file ({file})"],
            hint="run `mlops-ci init` to write a starter mlops.yaml",
        )
    text = _read_text(file)
    try:
        data = yaml.load(text, Loader=_Loader)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        line = mark.line + 1 if mark is not None else 1
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        kind = "" if isinstance(err, yaml.constructor.ConstructorError) else "YAML syntax error: "
        raise ConfigError([f"{file.name}:{line}: {kind}{problem}"], file=file) from None
    except RecursionError:
        raise ConfigError([f"{file.name}:1: nested too deeply to be a config"], file=file) from None
    if not isinstance(data, dict):
        raise ConfigError(
            [f"{file.name}:1: the file must be a YAML mapping of keys to values"], file=file
        )
    # Problems are found without line numbers first; only a file that has some is parsed again
    # into nodes to locate them. A text already found valid is not validated again.
    marker = _valid_marker(text)
    try:
        if (marker is None or not marker.exists()) and _schema_problems(data, None, file.name):
            raise ConfigError(_schema_problems(data, _nodes(text), file.name), file=file)
        filled = _with_defaults(data, schema())
        if _semantic_problems(filled, None, file.name):
            raise ConfigError(_semantic_problems(filled, _nodes(text), file.name), file=file)
    except RecursionError:
        raise ConfigError([f"{file.name}:1: nested too deeply to be a config"], file=file) from None
    if marker is not None and not marker.exists():
        _remember(marker)
    return _build(file, filled, _metrics_output_set(data))


def _metrics_output_set(data: dict[str, Any]) -> bool:
    """Whether the file names train.outputs.metrics itself (not the schema's default)."""
    train = data.get("train")
    outputs = train.get("outputs") if isinstance(train, dict) else None
    return isinstance(outputs, dict) and "metrics" in outputs


def _nodes(text: str) -> yaml.Node | None:
    return yaml.compose(text, Loader=yaml.SafeLoader)


def _valid_marker(text: str) -> Path | None:
    """Where the fact "this exact text passed this exact schema" is kept: a file named by the
    digest of both (and of this mlops-ci's version), in the user's cache folder. Validation
    imports jsonschema, a tenth of a second every verb would otherwise pay on every run.
    MLOPS_CI_CACHE_DIR, then XDG_CACHE_HOME/mlops-ci, then ~/.cache/mlops-ci; none when the
    home folder is unknown."""
    from mlops_ci import __version__

    root = os.environ.get("MLOPS_CI_CACHE_DIR")
    if not root:
        base = os.environ.get("XDG_CACHE_HOME") or (
            str(Path.home() / ".cache") if "HOME" in os.environ else ""
        )
        if not base:
            return None
        root = os.path.join(base, "mlops-ci")
    digest = hashlib.sha256()
    for part in (__version__, _schema_text(), text):
        digest.update(part.encode("utf-8", "surrogatepass") + b"\0")
    return Path(root) / "valid-configs" / digest.hexdigest()


def _remember(marker: Path) -> None:
    """Best effort: a cache that cannot be written only means validating again next time."""
    try:
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.touch()
    except OSError:
        pass


def _read_text(file: Path) -> str:
    """The file as UTF-8 text; anything else is one line naming the line of the first bad byte."""
    try:
        raw = file.read_bytes()
    except OSError as err:
        raise ConfigError(
            [f"{file.name}: cannot be read: {err.strerror or err}"], file=file
        ) from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw.count(b"\n", 0, err.start) + 1
        raise ConfigError(
            [f"{file.name}:{line}: not UTF-8 text (byte 0x{raw[err.start]:02x}); save it as UTF-8"],
            file=file,
        ) from None


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing at their line what no mlops.yaml value can be: integers
    of more than 30 digits (Python refuses 4,300), non-finite numbers (.nan, .inf), and tagged
    values PyYAML cannot build (``!!int abc``)."""


def _construct_int(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> int:
    digits = len(str(node.value).replace("_", "").lstrip("+-"))
    if digits > 30:
        raise yaml.constructor.ConstructorError(
            None, None, f"a {digits}-digit integer is beyond any setting", node.start_mark
        )
    try:
        return int(loader.construct_yaml_int(node))
    except ValueError:
        raise yaml.constructor.ConstructorError(
            None, None, f"'{str(node.value)[:40]}' is not an integer", node.start_mark
        ) from None


def _construct_float(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> float:
    try:
        value = float(loader.construct_yaml_float(node))
    except ValueError:
        raise yaml.constructor.ConstructorError(
            None, None, f"'{str(node.value)[:40]}' is not a number", node.start_mark
        ) from None
    if not math.isfinite(value):
        raise yaml.constructor.ConstructorError(
            None, None, f"'{node.value}' is not a finite number", node.start_mark
        )
    return value


_Loader.add_constructor("tag:yaml.org,2002:int", _construct_int)
_Loader.add_constructor("tag:yaml.org,2002:float", _construct_float)


def line_of(config: Config, path: list[Any]) -> int:
    """1-based line of a key of the loaded file (for problems found after loading)."""
    try:
        node = yaml.compose(config.path.read_text("utf-8"), Loader=yaml.SafeLoader)
    except (OSError, yaml.YAMLError):
        return 1
    return _line_of(node, path)


def validate_data(data: dict[str, Any], name: str = CONFIG_NAME) -> list[str]:
    """Problems of an already-parsed config (no line numbers known): used by `init` tests."""
    node = yaml.compose(yaml.safe_dump(data), Loader=yaml.SafeLoader)
    problems = _schema_problems(data, node, name)
    if not problems:
        problems = _semantic_problems(_with_defaults(data, schema()), node, name)
    return problems


# --- validation -------------------------------------------------------------------------------


def _schema_problems(data: Any, node: yaml.Node | None, name: str) -> list[str]:
    from jsonschema import Draft202012Validator

    found: list[tuple[int, str]] = []
    unknown = 0
    for error in Draft202012Validator(schema()).iter_errors(data):
        path = list(error.absolute_path)
        if error.validator == "additionalProperties" and isinstance(error.instance, dict):
            known = list(error.schema.get("properties", {}))
            for key in error.instance:
                if key not in known:
                    unknown += 1
                    if unknown > MAX_UNKNOWN_KEYS:
                        continue  # counted, not each located: a huge file stays linear
                    line = _line_of(node, [*path, key], key_line=True)
                    found.append(
                        (line, f"{_dotted([*path, key])}: unknown key{_suggest(str(key), known)}")
                    )
        elif error.validator == "required":
            missing = str(error.message).split("'")[1]
            line = _line_of(node, path)
            found.append((line, f"{_dotted([*path, missing])}: required key is missing"))
        else:
            friendly = (
                error.schema.get("x-pattern-message") if isinstance(error.schema, dict) else None
            )
            if friendly and error.validator in ("pattern", "type"):
                shown = f"{_dotted(path)}: {str(error.instance)[:60]!r} {friendly}"
                found.append((_line_of(node, path), shown))
            elif error.validator == "maxLength":
                shown = f"{_dotted(path)}: {len(error.instance):,} characters is too long (at most "
                found.append((_line_of(node, path), shown + f"{error.validator_value:,})"))
            else:
                message = error.message if len(error.message) <= 200 else error.message[:200] + "…"
                found.append((_line_of(node, path), f"{_dotted(path)}: {message}"))
    problems = [f"{name}:{line}: {message}" for line, message in sorted(found)]
    if unknown > MAX_UNKNOWN_KEYS:
        problems.append(f"{name}: ... and {unknown - MAX_UNKNOWN_KEYS} more unknown keys")
    return problems


def _semantic_problems(data: dict[str, Any], node: yaml.Node | None, name: str) -> list[str]:
    """Checks the schema cannot express: cross-references between keys."""
    problems: list[str] = []
    pipeline, command = data["pipeline"], data["train"].get("command")
    if pipeline["stages"] and pipeline["dvc"] is not None:
        line = _line_of(node, ["pipeline", "dvc"])
        problems.append(f"{name}:{line}: pipeline: give stages or dvc, not both")
    if command is None and not pipeline["stages"] and pipeline["dvc"] is None:
        line = _line_of(node, ["train"])
        problems.append(
            f"{name}:{line}: train.command: required key is missing (or give pipeline.stages)"
        )
    if command is not None and (pipeline["stages"] or pipeline["dvc"] is not None):
        line = _line_of(node, ["train", "command"])
        problems.append(
            f"{name}:{line}: train.command: the pipeline's training stage has the command; "
            "remove train.command (or the pipeline)"
        )
    evaluated = data["evaluate"]["metrics"]
    task = data["model"]["task"]
    for i, metric in enumerate(evaluated):
        spec = METRICS.get(metric)
        if spec is not None and spec.task != task:
            fitting = ", ".join(m for m, s in METRICS.items() if s.task == task)
            problems.append(
                f"{name}:{_line_of(node, ['evaluate', 'metrics', i])}: evaluate.metrics.{i}: "
                f"'{metric}' is a {spec.task} metric; model.task is {task} (use {fitting})"
            )
    declared = data["train"]["metrics"]
    primary = data["gate"]["primary_metric"]
    if primary is not None and primary not in evaluated:
        line = _line_of(node, ["gate", "primary_metric"])
        where = f"{name}:{line}: gate.primary_metric"
        problems.append(f"{where}: '{primary}' is not in evaluate.metrics {evaluated}")
    for i, rule in enumerate(data["gate"]["rules"]):
        line = _line_of(node, ["gate", "rules", i])
        against = any(k in rule for k in AGAINST_PRODUCTION)
        if not any(k in rule for k in ("min", "max")) and not against:
            problems.append(
                f"{name}:{line}: gate.rules.{i}: rule for '{rule['metric']}' sets no bound "
                f"(min, max, {', '.join(AGAINST_PRODUCTION)})"
            )
        metric = rule["metric"]
        if rule.get("slice") == "all" and metric in COST_METRICS:
            problems.append(
                f"{name}:{line}: gate.rules.{i}: slice: all does not apply to '{metric}', a "
                "cost of the whole model, not of a group of rows"
            )
        elif rule.get("slice") == "all" and metric not in evaluated:
            problems.append(
                f"{name}:{line}: gate.rules.{i}: slice: all needs a metric of evaluate.metrics "
                f"(each slice is scored with them), not '{metric}'"
            )
        if rule.get("slice") == "all" and not data["evaluate"]["slices"]:
            problems.append(
                f"{name}:{line}: gate.rules.{i}: slice: all, but evaluate.slices names no column"
            )
        spec = METRICS.get(metric)
        known = [*evaluated, *COST_METRICS]
        if spec is not None and spec.task != task:
            problems.append(
                f"{name}:{line}: gate.rules.{i}.metric: '{metric}' is a {spec.task} metric; "
                f"model.task is {task}"
            )
        elif spec is None and metric not in COST_METRICS and metric not in declared:
            close = difflib.get_close_matches(metric, [*declared, *known], n=1, cutoff=0.8)
            guess = f"; did you mean '{close[0]}'?" if close else ""
            if declared:
                problems.append(
                    f"{name}:{line}: gate.rules.{i}.metric: '{metric}' is neither a known "
                    f"metric, a cost ({', '.join(COST_METRICS)}) nor in train.metrics "
                    f"{declared}{guess}"
                )
            elif close and close[0] in COST_METRICS:
                problems.append(
                    f"{name}:{line}: gate.rules.{i}.metric: '{metric}' is not a cost compare "
                    f"measures{guess} (a metric your training logs: declare it in train.metrics)"
                )
        if (
            against
            and metric not in METRICS
            and metric not in COST_METRICS
            and "greater_is_better" not in rule
            and any(k in rule for k in DIRECTIONAL)
        ):
            problems.append(
                f"{name}:{line}: gate.rules.{i}.greater_is_better: needed to compare "
                f"'{rule['metric']}' with production (not a known metric)"
            )
    for env_name, env in data["deploy"].items():
        steps = env.get("rollout", {}).get("steps", [])
        mode = env.get("rollout", {}).get("mode", "canary")
        where = f"{name}:{_line_of(node, ['deploy', env_name, 'rollout', 'steps'])}"
        if steps and any(b <= a for a, b in zip(steps, steps[1:], strict=False)):
            problems.append(f"{where}: deploy.{env_name}.rollout.steps: must increase, got {steps}")
        elif steps and mode == "canary" and steps[-1] != 100:
            problems.append(
                f"{where}: deploy.{env_name}.rollout.steps: a canary rollout ends at 100, "
                f"got {steps[-1]:g}"
            )
    return problems


def _line_of(node: yaml.Node | None, path: list[Any], key_line: bool = False) -> int:
    """1-based line of the YAML node at ``path`` (or of its deepest existing parent)."""
    line = node.start_mark.line + 1 if node is not None else 1
    for part in path:
        child: yaml.Node | None = None
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                if key.value == str(part):
                    child = key if key_line and part == path[-1] else value
                    break
        elif (
            isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value)
        ):
            child = node.value[part]
        if child is None:
            break
        node = child
        line = child.start_mark.line + 1
    return line


def _dotted(path: list[Any]) -> str:
    return ".".join(str(p) for p in path) or "(top level)"


def _suggest(key: str, known: list[str]) -> str:
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.7)
    if close:
        return f" (did you mean '{close[0]}'?)"
    return f" (known keys: {', '.join(known)})"


def _with_defaults(data: Any, sub: dict[str, Any]) -> Any:
    """Copy of ``data`` with every missing key that the schema gives a default for filled in."""
    extra = sub.get("additionalProperties")
    if isinstance(data, dict) and ("properties" in sub or isinstance(extra, dict)):
        out = dict(data)
        for key, prop in sub.get("properties", {}).items():
            if key not in out and "default" in prop:
                out[key] = copy.deepcopy(prop["default"])
            if key in out:
                out[key] = _with_defaults(out[key], prop)
        if isinstance(extra, dict):  # a map of named entries, e.g. deploy environments
            for key in set(out) - set(sub.get("properties", {})):
                out[key] = _with_defaults(out[key], extra)
        return out
    if isinstance(data, list) and "items" in sub:
        return [_with_defaults(item, sub["items"]) for item in data]
    return data


def _build(file: Path, d: dict[str, Any], metrics_output_set: bool = True) -> Config:
    train, evaluate, gate, registry = d["train"], d["evaluate"], d["gate"], d["registry"]
    package, profile = d["package"], d["package"]["profile"]
    return Config(
        path=file,
        model=ModelConfig(**d["model"]),
        train=TrainConfig(
            command=train["command"] or "",
            inputs=tuple(train["inputs"]),
            params=dict(train["params"]),
            model_output=train["outputs"]["model"],
            metrics_output=train["outputs"]["metrics"],
            declared_metrics=tuple(train["metrics"]),
            timeout_minutes=float(train["timeout_minutes"]),
            cache=bool(train["cache"]),
            metrics_output_set=metrics_output_set,
        ),
        evaluate=EvaluateConfig(
            data=evaluate["data"],
            target=evaluate["target"],
            features=tuple(evaluate["features"]),
            metrics=tuple(evaluate["metrics"]),
            slices=tuple(evaluate["slices"]),
            slice_bins=int(evaluate["slice_bins"]),
            slice_max=int(evaluate["slice_max"]),
            importance=ImportanceConfig(**evaluate["importance"]),
        ),
        gate=GateConfig(
            rules=tuple(Rule(**rule) for rule in gate["rules"]),
            primary_metric=gate["primary_metric"] or evaluate["metrics"][0],
            significance=float(gate["significance"]),
            require_improvement=bool(gate["require_improvement"]),
            bootstrap_samples=int(gate["bootstrap_samples"]),
            seed=int(gate["seed"]),
            min_slice_rows=int(gate["min_slice_rows"]),
            cost=CostConfig(**gate["cost"]),
        ),
        registry=RegistryConfig(
            tracking_uri=registry["tracking_uri"],
            artifact_location=registry["artifact_location"],
            experiment=registry["experiment"] or d["model"]["name"],
            production_alias=registry["production_alias"],
            candidate_alias=registry["candidate_alias"],
        ),
        package=PackageConfig(
            onnx=str(package["onnx"]).lower(),
            parity_tolerance=_optional_float(package["parity_tolerance"]),
            parity_rtol=_optional_float(package["parity_rtol"]),
            parity_max_row_share=float(package["parity_max_row_share"]),
            target_opset=package["target_opset"],
            image=package["image"],
            push=bool(package["push"]),
            base_image=package["base_image"],
            port=int(package["port"]),
            profile=ProfileConfig(
                single_row_runs=int(profile["single_row_runs"]),
                batch_sizes=tuple(profile["batch_sizes"]),
                intra_op_threads=int(profile["intra_op_threads"]),
                graph_optimization_level=profile["graph_optimization_level"],
            ),
        ),
        serve=serve_config(d["serve"]),
        monitor=monitor_config(d["monitor"]),
        deploy={
            name: _deploy_env(name, env, registry["production_alias"])
            for name, env in _with_defaults(d["deploy"], schema()["properties"]["deploy"]).items()
        },
        notify=_notify(d["notify"]),
        pipeline=PipelineConfig(
            stages=tuple(dict(stage) for stage in d["pipeline"]["stages"]),
            dvc=d["pipeline"]["dvc"],
        ),
    )


def _optional_float(value: Any) -> float | None:
    return None if value is None else float(value)


def _notify(n: dict[str, Any]) -> NotifyConfig:
    return NotifyConfig(
        webhooks=tuple(
            Webhook(
                url=w["url"],
                events=tuple(w["events"]),
                secret_env=w["secret_env"],
                timeout_s=float(w["timeout_s"]),
                retries=int(w["retries"]),
            )
            for w in n["webhooks"]
        ),
        dispatch_events=tuple(n["repository_dispatch"]["events"]),
        dispatch_repository=n["repository_dispatch"]["repository"],
        fail_on_error=bool(n["fail_on_error"]),
    )


def _deploy_env(name: str, e: dict[str, Any], production_alias: str) -> DeployEnv:
    r, k = e["rollout"], e["kubernetes"]
    return DeployEnv(
        name=name,
        target=e["target"],
        host=e["host"],
        port=int(e["port"]),
        approval=e["approval"],
        require_comparison=bool(e["require_comparison"]),
        require_pr_review=bool(e["require_pr_review"]),
        github_environment=e["github_environment"] or name,
        alias=e["alias"] or (production_alias if name == "production" else name),
        rollout=RolloutConfig(
            mode=r["mode"],
            steps=tuple(float(v) for v in r["steps"]),
            window_seconds=float(r["window_seconds"]),
            probe_requests=int(r["probe_requests"]),
            min_requests=int(r["min_requests"]),
            max_error_rate=float(r["max_error_rate"]),
            max_p99_ratio=float(r["max_p99_ratio"]),
            max_p99_ms=float(r["max_p99_ms"]),
        ),
        kubernetes=KubernetesConfig(
            namespace=k["namespace"],
            serving=k["serving"],
            replicas=int(k["replicas"]),
            max_replicas=int(k["max_replicas"]),
            target_cpu_percent=int(k["target_cpu_percent"]),
            output_dir=k["output_dir"],
        ),
        restart_policy=e["docker"]["restart_policy"],
        egress=bool(e["egress"]),
    )


def serve_config(serve: dict[str, Any] | None = None) -> ServeConfig:
    """The serve section, defaults from the schema (serve runs without an mlops.yaml too)."""
    s = _with_defaults(serve or {}, schema()["properties"]["serve"])
    return ServeConfig(
        host=s["host"],
        port=int(s["port"]),
        workers=int(s["workers"]),
        intra_op_threads=int(s["intra_op_threads"]),
        max_payload_bytes=int(s["max_payload_bytes"]),
        max_batch_rows=int(s["max_batch_rows"]),
        graceful_timeout_s=float(s["graceful_timeout_s"]),
        admin_token_env=s["admin_token_env"],
        access_log=bool(s["access_log"]),
        read_timeout_s=float(s["read_timeout_s"]),
    )


def monitor_config(monitor: dict[str, Any] | None = None) -> MonitorConfig:
    m = _with_defaults(monitor or {}, schema()["properties"]["monitor"])
    return MonitorConfig(
        collect=bool(m["collect"]),
        log_dir=m["log_dir"],
        format=m["format"],
        flush_rows=int(m["flush_rows"]),
        flush_seconds=float(m["flush_seconds"]),
        rotate_mb=float(m["rotate_mb"]),
        drift=_drift(m["drift"]),
        durable=bool(m["durable"]),
    )


def _drift(d: dict[str, Any]) -> DriftConfig:
    return DriftConfig(
        reference=d["reference"],
        current=d["current"],
        features=tuple(d["features"]),
        psi_threshold=float(d["psi_threshold"]),
        p_value=float(d["p_value"]),
        test=d["test"],
        max_drifted_share=float(d["max_drifted_share"]),
        bins=int(d["bins"]),
        sample_size=int(d["sample_size"]),
        chunk_rows=int(d["chunk_rows"]),
        seed=int(d["seed"]),
        min_rows=int(d["min_rows"]),
    )
