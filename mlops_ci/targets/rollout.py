"""Health of a rollout step, judged from the service's own Prometheus metrics over a window.

Two scrapes of ``/metrics`` (before and after a step's window) give, per version, the requests
answered, the 5xx among them and the latency histogram of the window; p99 is read off the
histogram's buckets (its upper bound). Pure functions: the deploy step does the waiting.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mlops_ci.config.deployenv import RolloutConfig


@dataclass(frozen=True)
class VersionCounts:
    """Cumulative counters of one version at one scrape."""

    requests: float = 0.0
    server_errors: float = 0.0
    buckets: dict[float, float] = field(default_factory=dict)  # le (s) -> cumulative count


@dataclass(frozen=True)
class VersionWindow:
    version: str
    requests: int
    server_errors: int
    p99_ms: float | None

    @property
    def error_rate(self) -> float:
        return self.server_errors / self.requests if self.requests else 0.0


@dataclass(frozen=True)
class Health:
    passed: bool
    judged: bool  # False when the window held too few requests to judge
    reasons: tuple[str, ...]
    new: VersionWindow
    current: VersionWindow | None


def parse_metrics(text: str) -> dict[str, VersionCounts]:
    """Per version: requests, 5xx and the latency buckets, summed over endpoints."""
    from prometheus_client.parser import text_string_to_metric_families

    requests: dict[str, float] = {}
    errors: dict[str, float] = {}
    buckets: dict[str, dict[float, float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            version = sample.labels.get("version", "-")
            if sample.name == "mlops_requests_total":
                requests[version] = requests.get(version, 0.0) + sample.value
                if sample.labels.get("code", "").startswith("5"):
                    errors[version] = errors.get(version, 0.0) + sample.value
            elif sample.name == "mlops_request_duration_seconds_bucket":
                le = float(sample.labels["le"])
                into = buckets.setdefault(version, {})
                into[le] = into.get(le, 0.0) + sample.value
    return {
        v: VersionCounts(requests.get(v, 0.0), errors.get(v, 0.0), buckets.get(v, {}))
        for v in set(requests) | set(buckets)
    }


def window(
    version: str, before: dict[str, VersionCounts], after: dict[str, VersionCounts]
) -> VersionWindow:
    """What happened to ``version`` between two scrapes."""
    a, b = after.get(version, VersionCounts()), before.get(version, VersionCounts())
    deltas = {le: count - b.buckets.get(le, 0.0) for le, count in sorted(a.buckets.items())}
    return VersionWindow(
        version,
        int(round(a.requests - b.requests)),
        int(round(a.server_errors - b.server_errors)),
        _p99_ms(deltas),
    )


def _p99_ms(deltas: dict[float, float]) -> float | None:
    total = deltas.get(float("inf"), 0.0)
    if total <= 0:
        return None
    for le, count in deltas.items():
        if count >= 0.99 * total:
            return le * 1000 if le != float("inf") else float("inf")
    return None


def judge(new: VersionWindow, current: VersionWindow | None, rules: RolloutConfig) -> Health:
    """Healthy when the new version's 5xx rate and p99 stay within the rules."""
    if new.requests < rules.min_requests:
        reason = f"v{new.version} answered {new.requests} requests (< {rules.min_requests})"
        return Health(False, False, (reason,), new, current)
    reasons = []
    if new.error_rate > rules.max_error_rate:
        reasons.append(f"v{new.version} 5xx rate {new.error_rate:.1%} > {rules.max_error_rate:.1%}")
    if new.p99_ms is not None and new.p99_ms > rules.max_p99_ms:
        baseline = current.p99_ms if current is not None else None
        if baseline is None or new.p99_ms > baseline * rules.max_p99_ratio:
            against = (
                f" ({rules.max_p99_ratio:g}x v{current.version}'s {baseline:g} ms)"
                if current is not None and baseline is not None
                else ""
            )
            reasons.append(
                f"v{new.version} p99 {new.p99_ms:g} ms > {rules.max_p99_ms:g} ms{against}"
            )
    return Health(not reasons, True, tuple(reasons), new, current)
