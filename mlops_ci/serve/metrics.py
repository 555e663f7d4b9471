"""Prometheus metrics of the scoring service, per model version (prometheus_client).

With several workers, ``PROMETHEUS_MULTIPROC_DIR`` (set by ``serve`` before the workers start)
makes every worker write its values to files that ``/metrics`` sums.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

# Buckets for a service whose single-row answers take well under a millisecond.
LATENCY_BUCKETS = (
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
)  # fmt: skip

# Adaptive batching: rows per model call, and a request's wait in its version's queue.
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096)
QUEUE_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25)


class ServiceMetrics:
    """Requests, errors, latency and rows per version and endpoint; the traffic weights; the
    rows the input log could not write."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self, model: str) -> None:
        self.model = model
        self._children: dict[tuple[str, str, int], tuple[Any, Any, Any, Any]] = {}
        self.registry = CollectorRegistry()
        labels = ["model", "version", "endpoint", "code"]
        self.requests = Counter(
            "mlops_requests", "Scoring requests answered.", labels, registry=self.registry
        )
        self.errors = Counter(
            "mlops_request_errors",
            "Scoring requests refused or failed (4xx/5xx).",
            labels,
            registry=self.registry,
        )
        self.latency = Histogram(
            "mlops_request_duration_seconds",
            "Time from the request body read to the response built.",
            ["model", "version", "endpoint"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.rows = Counter(
            "mlops_rows_scored", "Rows scored.", ["model", "version"], registry=self.registry
        )
        self.weight = Gauge(
            "mlops_traffic_weight",
            "Share of unpinned traffic routed to a version.",
            ["model", "version"],
            registry=self.registry,
            multiprocess_mode="mostrecent",
        )
        self.input_log_dropped = Counter(
            "mlops_input_log_dropped_rows",
            "Scored rows the input log could not write (a full disk, an I/O error); the "
            "requests were answered.",
            ["model"],
            registry=self.registry,
        )
        self.batch_size = Histogram(
            "mlops_batch_size",
            "Rows per model call (serve.batching: the rows of the requests scored together).",
            ["model", "version"],
            buckets=BATCH_BUCKETS,
            registry=self.registry,
        )
        self.batch_queue = Histogram(
            "mlops_batch_queue_seconds",
            "Time a request waited for its version's model call (serve.batching).",
            ["model", "version"],
            buckets=QUEUE_BUCKETS,
            registry=self.registry,
        )
        self.provider = Gauge(
            "mlops_execution_provider",
            "1 for the onnxruntime execution provider an ONNX version runs on; 'requested' is "
            "the one package.providers or serve.providers asked for first.",
            ["model", "version", "provider", "requested"],
            registry=self.registry,
            multiprocess_mode="mostrecent",
        )
        self.shadow_rows = Counter(
            "mlops_shadow_rows",
            "Rows a shadow version scored after the primary answered them.",
            ["model", "version"],
            registry=self.registry,
        )
        self.shadow_dropped = Counter(
            "mlops_shadow_dropped",
            "Rows a shadow version did not score because its queue was full (overload).",
            ["model", "version"],
            registry=self.registry,
        )
        self.shadow_errors = Counter(
            "mlops_shadow_errors",
            "Rows a shadow version refused (another input contract) or failed on; the "
            "requests were answered by the primary.",
            ["model", "version", "reason"],
            registry=self.registry,
        )

    def set_provider(self, version: str, provider: str, requested: str) -> None:
        """1 for the execution provider a version's session runs on (``requested``: the one
        asked for first; they differ where onnxruntime fell back)."""
        self.provider.labels(self.model, version, provider, requested).set(1)

    def batch_observer(self, version: str) -> Callable[[int, list[float]], None]:
        """What a version's batcher reports after each model call: its rows, and how long
        each request in it waited in the queue (0 for a request scored at once)."""
        size = self.batch_size.labels(self.model, version)
        queue = self.batch_queue.labels(self.model, version)

        def observe(rows: int, waits: list[float]) -> None:
            size.observe(rows)
            for wait in waits:
                queue.observe(wait)

        return observe

    def shadow(self, version: str, outcome: str, rows: int) -> None:
        """Rows of a shadow version: ``scored``, ``dropped`` (its queue was full), or
        ``refused``/``failed`` (its own error; the client was answered by the primary)."""
        if outcome == "scored":
            self.shadow_rows.labels(self.model, version).inc(rows)
        elif outcome == "dropped":
            self.shadow_dropped.labels(self.model, version).inc(rows)
        else:
            self.shadow_errors.labels(self.model, version, outcome).inc(rows)

    def count_shadow(self, version: str) -> None:
        """The shadow's series from 0 on: an alert on the rate of drops needs the series."""
        self.shadow_rows.labels(self.model, version)
        self.shadow_dropped.labels(self.model, version)

    def observe(self, version: str, endpoint: str, code: int, seconds: float, rows: int) -> None:
        key = (version, endpoint, code)
        children = self._children.get(key)
        if children is None:  # first request of its kind: look the labelled series up once
            children = self._children[key] = self._series(version, endpoint, code)
        requests, errors, latency, scored = children
        requests.inc()
        if errors is not None:
            errors.inc()
        else:
            latency.observe(seconds)
            scored.inc(rows)

    def _series(self, version: str, endpoint: str, code: int) -> tuple[Any, Any, Any, Any]:
        status = str(code)
        requests = self.requests.labels(self.model, version, endpoint, status)
        if code >= 400:
            return requests, self.errors.labels(self.model, version, endpoint, status), None, None
        latency = self.latency.labels(self.model, version, endpoint)
        return requests, None, latency, self.rows.labels(self.model, version)

    def count_input_log_drops(self) -> Callable[[int], None]:
        """The input log's counter of dropped rows, shown from 0 on (only where there is a
        log): an alert on its rate needs the series before the first failure."""
        child = self.input_log_dropped.labels(self.model)  # the series exists at 0 from here
        return child.inc

    def set_shares(self, shares: dict[str, float]) -> None:
        for version, share in shares.items():
            self.weight.labels(self.model, version).set(share)

    def render(self) -> bytes:
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            from prometheus_client import multiprocess

            merged = CollectorRegistry()
            multiprocess.MultiProcessCollector(merged)  # type: ignore[no-untyped-call]
            return bytes(generate_latest(merged))
        return bytes(generate_latest(self.registry))
