"""What one serving worker holds: the loaded versions with their limits, the router, the
metrics, the access and input logs; and the settings every worker is built from (passed to
worker processes as JSON in the environment). ``app`` puts HTTP routes in front of it."""

from __future__ import annotations

import logging
import os
from collections import Counter
from collections.abc import Awaitable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import orjson
from starlette.concurrency import run_in_threadpool

from mlops_ci.config.types import Batching
from mlops_ci.model.tensors import TensorInput
from mlops_ci.serve.accesslog import AccessLog, RequestIds
from mlops_ci.serve.batching import Batcher, calibrate
from mlops_ci.serve.inputlog import InputLog, LogSettings
from mlops_ci.serve.metrics import ServiceMetrics
from mlops_ci.serve.model import LoadedModel, ModelSpec, Prediction, read_spec
from mlops_ci.serve.payload import Limits, PayloadError, batch_rows, echoed
from mlops_ci.serve.protocol import requests_in_flight
from mlops_ci.serve.router import Router, SharedState, Split, StateFile
from mlops_ci.serve.shadow import Shadow, ShadowScorer
from mlops_ci.serve.shadowproc import ShadowProcess

THREADPOOL_ROWS = 256  # larger batches score off the event loop
log = logging.getLogger("mlops_ci.serve")


@dataclass(frozen=True)
class ServiceSettings:
    """Everything a worker needs to build the app (JSON-able: workers get it from the env)."""

    models: list[ModelSpec]
    weights: dict[str, float]
    intra_op_threads: int = 1
    max_payload_bytes: int = 1024 * 1024
    read_timeout_s: float = 30.0  # for the head (serve.protocol) and then the body
    max_batch_rows: int = 10_000
    admin_token: str | None = None
    access_log: bool = True
    input_log: LogSettings | None = None
    state_file: Path | None = None  # shared by workers when there are several
    # The sandbox of a native model's runner (auto | required | off, as train.isolation)
    isolation: str = "auto"
    shadow: Shadow | None = None  # a loaded version scoring a share of requests unseen
    batching: Batching | None = None  # serve.batching: off when None
    providers: tuple[str, ...] | None = None  # serve.providers: else each package's own


class Service:
    """The loaded versions, the router, the metrics and the input log of one worker.

    Versions can be loaded and unloaded while serving (the admin endpoints, which a rollout
    drives); with several workers each change goes through the state file and every worker
    applies it on its next request. A native version's model runner stops when the version is
    dropped, and every one when the service closes.
    """

    def __init__(self, settings: ServiceSettings) -> None:
        self.settings = settings
        self.models: dict[str, LoadedModel] = {}
        self.limits: dict[str, Limits] = {}
        self.batchers: dict[str, Batcher] = {}
        self.unbatched: dict[str, str] = {}  # batching on, but not for these versions: why
        # Requests whose body is still arriving, by the version each was routed to (a batch of
        # that version may wait for them; ``app`` routes before it reads).
        self.reading: Counter[str] = Counter()
        self.name = settings.models[0].name
        self.metrics = ServiceMetrics(self.name)
        try:
            for spec in settings.models:
                self._add(self._loaded(spec))
        except BaseException:
            self.close()
            raise
        self.router = Router(list(self.models), Split(settings.weights))
        self.shared = StateFile(settings.state_file) if settings.state_file else None
        self.metrics.set_shares(self.router.split.shares())
        self.input_log = (
            InputLog(settings.input_log, self.metrics.count_input_log_drops())
            if settings.input_log
            else None
        )
        self.access = AccessLog() if settings.access_log else None
        self.ids = RequestIds()
        if settings.shadow is not None and settings.shadow.version not in self.models:
            raise ValueError(f"the shadow version {settings.shadow.version} is not loaded")
        self.shadow = ShadowScorer(self, settings.shadow)
        if settings.shadow is not None:
            self.metrics.count_shadow(settings.shadow.version)

    def _loaded(self, spec: ModelSpec) -> LoadedModel:
        s = self.settings
        model = LoadedModel(spec, s.intra_op_threads, s.isolation, providers=s.providers)
        if model.ran is not None:  # onnxruntime falls back silently: say it, and show it
            said = log.warning if model.ran.fell_back else log.info
            said("v%s runs on %s", spec.version, model.ran.describe())
            self.metrics.set_provider(spec.version, model.ran.provider, model.ran.requested[0])
        return model

    def _add(self, model: LoadedModel) -> None:
        replaced = self.models.get(model.spec.version)
        if replaced is not None and replaced is not model:
            replaced.close()
            self.batchers.pop(model.spec.version, None)  # it scores the replaced model
        version = model.spec.version
        self.models[version] = model
        self.limits[version] = Limits(
            model.n_features, model.spec.features, self.settings.max_batch_rows, model.schema,
            model.spec.tensor_schema,
        )  # fmt: skip
        batching = self.settings.batching
        largest = batching.max_batch_size if batching is not None else None
        why = calibrate(model, self.limits[version], largest)  # batched or not: the same answers
        if batching is not None and version not in self.batchers:
            if why is not None:
                self.unbatched[version] = why
                log.warning("v%s is served unbatched: %s", version, why)
                return
            # The batcher holds its model: requests queued when the version is unloaded are
            # still answered by the version they were routed to.
            self.batchers[version] = Batcher(
                lambda x: _scored(model, x),
                batching,
                self.metrics.batch_observer(version),
                requests_in_flight,
                lambda: self.reading[version],
            )

    def sync(self) -> None:
        """Apply a change another worker made (a no-op most calls: a clock check)."""
        if self.shared is None:
            return
        state = self.shared.poll()
        if state is None:
            return
        for version, folder in state.models.items():
            if version not in self.models:
                self._add(self._loaded(read_spec(Path(folder))))
        self.shadow.set(state.shadow)  # before a version it named is dropped
        for version in set(self.models) - set(state.models):
            self._drop(version)
        self.router.versions = set(self.models)
        self.router.split = Split(state.weights)
        self.metrics.set_shares(self.router.split.shares())

    def load(self, folder: Path) -> LoadedModel:
        """Load a package folder as a new version taking no traffic yet."""
        spec = read_spec(folder)
        if spec.name != self.name:
            raise PayloadError(
                422, f"{folder} holds '{spec.name}'; this endpoint serves '{self.name}'"
            )
        current = self.models.get(spec.version)
        if current is not None and current.spec.sha256 != spec.sha256:
            raise PayloadError(409, f"version {spec.version} is loaded with other files")
        model = current or self._loaded(spec)
        self._add(model)
        self.router.versions = set(self.models)
        self._publish()
        return model

    def unload(self, version: str) -> None:
        if version not in self.models:
            raise PayloadError(404, f"version '{echoed(version)}' is not loaded")
        if self.router.split.weights.get(version, 0) > 0:
            raise PayloadError(409, f"version '{version}' still takes traffic: set its weight to 0")
        if self.shadow.shadow is not None and self.shadow.shadow.version == version:
            raise PayloadError(409, f"version '{version}' is the shadow: remove the shadow first")
        self._drop(version)
        self.router.versions = set(self.models)
        self.router.split = Split(
            {v: w for v, w in self.router.split.weights.items() if v != version}
        )
        self._publish()

    def _drop(self, version: str) -> None:
        model = self.models.pop(version)
        del self.limits[version]
        self.batchers.pop(version, None)
        self.unbatched.pop(version, None)
        model.close()

    def close(self) -> None:
        """Stop the shadow's thread and every version's model runner (the server is
        stopping)."""
        shadow = getattr(self, "shadow", None)  # a version that failed to load: none yet
        if shadow is not None:
            shadow.close()
        for model in self.models.values():
            model.close()

    def set_shadow(self, shadow: Shadow | None) -> None:
        """Start, change or stop shadowing (the admin endpoint); every worker follows."""
        self.shadow.set(shadow)
        if shadow is not None:
            self.metrics.count_shadow(shadow.version)
        self._publish()

    # --- what the shadow's thread asks (``ShadowHost``) --------------------------------------

    def shadow_limits(self, version: str) -> Limits | None:
        return self.limits.get(version)

    def shadow_process(self, version: str) -> ShadowProcess:
        """The shadow's own process, loading ``version``'s package (``shadowproc``)."""
        model = self.models.get(version)
        if model is None:
            raise RuntimeError(f"version {version} is no longer loaded")
        s = self.settings
        return ShadowProcess(
            model.spec, s.input_log, s.intra_op_threads, s.isolation, s.max_batch_rows
        )

    def shadow_counted(self, version: str, outcome: str, rows: int) -> None:
        self.metrics.shadow(version, outcome, rows)

    def shadow_log_dropped(self, rows: int) -> None:
        self.metrics.input_log_dropped.labels(self.name).inc(rows)

    def set_split(self, split: Split) -> None:
        self.router.split = split
        self.metrics.set_shares(split.shares())
        self._publish()

    def _publish(self) -> None:
        if self.shared is not None:
            self.shared.write(self.state())

    def state(self) -> SharedState:
        return SharedState(
            dict(self.router.split.weights),
            {v: str(m.spec.folder) for v, m in self.models.items()},
            self.shadow.shadow,
        )

    def predict(self, version: str, x: Any) -> Awaitable[Prediction] | Prediction:
        """The version's answer to ``x``: through its batcher when batching is on (the rows
        of requests arriving together scored in one call), else one call of its own."""
        batcher = self.batchers.get(version)
        if batcher is not None:
            return batcher.predict(x)
        model = self.models.get(version)
        if model is None:  # routed, then unloaded before its call: not this request's fault
            raise PayloadError(503, f"version '{version}' was unloaded; send the request again")
        return _scored(model, x)


def _scored(model: LoadedModel, x: Any) -> Awaitable[Prediction] | Prediction:
    """One call of the model; a native model waits on its runner's pipe (and lock), and a
    large batch takes a while: those never on the event loop."""
    if model.in_runner or batch_rows(x) > THREADPOOL_ROWS:
        return run_in_threadpool(model.predict, x)
    return model.predict(x)


def settings_to_env(settings: ServiceSettings) -> str:
    """The settings as JSON for worker processes (``MLOPS_SERVE_SETTINGS``); the admin token
    travels apart, in ``MLOPS_SERVE_ADMIN_TOKEN``, so it is never part of a logged value."""
    return orjson.dumps(asdict(replace(settings, admin_token=None)), default=str).decode()


def settings_from_env() -> ServiceSettings:
    raw = orjson.loads(os.environ["MLOPS_SERVE_SETTINGS"])
    models = [
        ModelSpec(
            **{
                **m,
                "folder": Path(m["folder"]),
                "features": tuple(m["features"]),
                "kinds": tuple(m["kinds"]),
                "classes": tuple(m["classes"]),
                "nullable": tuple(m["nullable"]),
                "providers": tuple(m.get("providers") or ("CPUExecutionProvider",)),
                "tensors": tuple(
                    TensorInput(t["name"], t["dtype"], tuple(t["shape"]))
                    for t in m.get("tensors") or ()
                ),
            }
        )
        for m in raw["models"]
    ]
    log_settings = None
    if raw.get("input_log"):
        il = raw["input_log"]
        log_settings = LogSettings(
            **{**il, "folder": Path(il["folder"]), "features": tuple(il["features"])}
        )
    return ServiceSettings(
        models=models,
        weights={str(k): float(v) for k, v in raw["weights"].items()},
        intra_op_threads=raw["intra_op_threads"],
        max_payload_bytes=raw["max_payload_bytes"],
        read_timeout_s=raw["read_timeout_s"],
        max_batch_rows=raw["max_batch_rows"],
        admin_token=os.environ.get("MLOPS_SERVE_ADMIN_TOKEN") or None,
        access_log=raw["access_log"],
        input_log=log_settings,
        state_file=Path(raw["state_file"]) if raw.get("state_file") else None,
        isolation=str(raw.get("isolation") or "auto"),
        shadow=Shadow(**raw["shadow"]) if raw.get("shadow") else None,
        batching=Batching(**raw["batching"]) if raw.get("batching") else None,
        providers=tuple(raw["providers"]) if raw.get("providers") else None,
    )
