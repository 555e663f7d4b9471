"""mlops.yaml → frozen dataclasses, from the file as ``config.file`` read and checked it
against the JSON Schema shipped in the package (and filled it with the schema's defaults)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mlops_ci.config.deployenv import DeployEnv as DeployEnv  # re-exported: its old home
from mlops_ci.config.deployenv import deploy_env
from mlops_ci.config.file import find_config, node_line, read_checked, schema, with_defaults
from mlops_ci.metrics import COST_METRICS
from mlops_ci.monitor.quality import QualityConfig

Scalar = str | int | float | bool


@dataclass(frozen=True)
class ModelConfig:
    name: str
    flavor: str
    task: str
    code_paths: tuple[str, ...] = ()  # local modules the model imports (MLflow's code_paths)


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
    isolation: str = "auto"  # auto | required | off: the sandbox of the command (sandbox.py)


@dataclass(frozen=True)
class PipelineConfig:
    """pipeline: the stages as written in mlops.yaml (checked and ordered by ``pipeline.spec``), or
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
    # evaluate.dtypes: {column: category | bool}, the kinds a CSV cannot carry
    dtypes: dict[str, str] = field(default_factory=dict)
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
    providers: tuple[str, ...] = ("CPUExecutionProvider",)  # best first (model/providers.py)
    accelerator: str = "cpu"  # cpu | cuda: the image's variant

    @property
    def converts(self) -> bool:
        """ONNX is tried (auto or true)."""
        return self.onnx != "false"

    @property
    def onnx_required(self) -> bool:
        """A refused conversion or failed parity is an error, not a fall-back (true)."""
        return self.onnx == "true"


@dataclass(frozen=True)
class Batching:
    """serve.batching: the most rows one model call takes, and the longest a batch waits for
    requests whose bodies are still arriving (``mlops_ci.serve.batching``)."""

    max_batch_size: int
    max_delay_ms: float = 2.0

    def env(self) -> dict[str, str]:
        """The variables `mlops-ci serve` reads for it (its flags' ``envvar``): how an image
        built with serve.batching carries it to every container that runs it."""
        return {
            BATCH_SIZE_ENV: str(self.max_batch_size),
            BATCH_DELAY_ENV: f"{self.max_delay_ms:g}",
        }


BATCH_SIZE_ENV, BATCH_DELAY_ENV = "MLOPS_SERVE_MAX_BATCH_SIZE", "MLOPS_SERVE_MAX_DELAY_MS"


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
    batching: Batching | None = None
    providers: tuple[str, ...] | None = None  # serve.providers: else the package's


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
    quality: QualityConfig = QualityConfig()


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


def load_config(path: str | Path | None = None) -> Config:
    """Read, validate and type mlops.yaml; raise ConfigError with one line per problem."""
    file = find_config(path)
    filled, metrics_output_set = read_checked(file)
    return _build(file, filled, metrics_output_set)


def line_of(config: Config, path: list[Any]) -> int:
    """1-based line of a key of the loaded file (for problems found after loading)."""
    try:
        node = yaml.compose(config.path.read_text("utf-8"), Loader=yaml.SafeLoader)
    except (OSError, yaml.YAMLError):
        return 1
    return node_line(node, path)


# --- validation -------------------------------------------------------------------------------


def _build(file: Path, d: dict[str, Any], metrics_output_set: bool = True) -> Config:
    train, evaluate, gate, registry = d["train"], d["evaluate"], d["gate"], d["registry"]
    package, profile = d["package"], d["package"]["profile"]
    return Config(
        path=file,
        model=ModelConfig(**{**d["model"], "code_paths": tuple(d["model"]["code_paths"])}),
        train=TrainConfig(
            command=train["command"] or "",
            inputs=tuple(train["inputs"]),
            params=dict(train["params"]),
            model_output=train["outputs"]["model"],
            metrics_output=train["outputs"]["metrics"],
            declared_metrics=tuple(train["metrics"]),
            timeout_minutes=float(train["timeout_minutes"]),
            isolation=train["isolation"] or "off",  # a bare `off` is YAML 1.1's false
            cache=bool(train["cache"]),
            metrics_output_set=metrics_output_set,
        ),
        evaluate=EvaluateConfig(
            data=evaluate["data"],
            target=evaluate["target"],
            features=tuple(evaluate["features"]),
            metrics=tuple(evaluate["metrics"]),
            dtypes=dict(evaluate["dtypes"]),
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
            providers=tuple(package["providers"]),
            accelerator=package["accelerator"],
        ),
        serve=serve_config(d["serve"]),
        monitor=monitor_config(d["monitor"]),
        deploy={
            name: deploy_env(name, env, registry["production_alias"])
            for name, env in with_defaults(d["deploy"], schema()["properties"]["deploy"]).items()
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


def serve_config(serve: dict[str, Any] | None = None) -> ServeConfig:
    """The serve section, defaults from the schema (serve runs without an mlops.yaml too)."""
    s = with_defaults(serve or {}, schema()["properties"]["serve"])
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
        batching=batching(s.get("batching")),
        providers=tuple(s["providers"]) if s.get("providers") else None,
    )


def batching(b: dict[str, Any] | None) -> Batching | None:
    """serve.batching, or None (off); a max_batch_size of 1 is off too (flags say so)."""
    if not b or int(b["max_batch_size"]) < 2:
        return None
    return Batching(int(b["max_batch_size"]), float(b["max_delay_ms"]))


def monitor_config(monitor: dict[str, Any] | None = None) -> MonitorConfig:
    m = with_defaults(monitor or {}, schema()["properties"]["monitor"])
    return MonitorConfig(
        collect=bool(m["collect"]),
        log_dir=m["log_dir"],
        format=m["format"],
        flush_rows=int(m["flush_rows"]),
        flush_seconds=float(m["flush_seconds"]),
        rotate_mb=float(m["rotate_mb"]),
        drift=_drift(m["drift"]),
        durable=bool(m["durable"]),
        quality=QualityConfig(**m["quality"]),
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
