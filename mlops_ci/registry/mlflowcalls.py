"""How the MLflow adapter calls MLflow: every metadata call bounded in time, every failure of
MLflow or of the HTTP layer under it one ServiceError line (exit 3) naming the server without
its credentials, never MLflow's raw exception (exit 4).

The bound: a metadata call (a search, a run's creation, a batch of params, metrics and tags, an
alias) ends within ``MLFLOW_HTTP_REQUEST_TIMEOUT`` + 5 s whatever MLflow's own retries would
take; an artifact transfer lasts as long as bytes flow, each request within
``MLFLOW_HTTP_REQUEST_TIMEOUT``, retried ``MLFLOW_HTTP_REQUEST_MAX_RETRIES`` times."""

from __future__ import annotations

import os
import re
import threading
from typing import TYPE_CHECKING, Any

from mlops_ci.credentials import redact_urls
from mlops_ci.errors import ServiceError
from mlops_ci.registry.tracking import redact

if TYPE_CHECKING:
    from mlflow import MlflowClient

# Bounded retries so a dead server fails in seconds, not minutes (users may override).
HTTP_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "3", "MLFLOW_HTTP_REQUEST_TIMEOUT": "30"}
# A metadata call ends within MLFLOW_HTTP_REQUEST_TIMEOUT plus this, whatever its retries.
DEADLINE_MARGIN_S = 5.0
_MISSING = object()  # what _lookup's call answers for "does not exist"


def float_env(name: str, default: float) -> float:
    try:
        value = float(os.environ.get(name, default))
    except ValueError:
        return default
    return value if value > 0 else default


def is_not_found(err: Exception) -> bool:
    code = str(getattr(err, "error_code", ""))
    return "RESOURCE_DOES_NOT_EXIST" in code or (
        "INVALID_PARAMETER_VALUE" in code and "not found" in str(err)
    )


def _transport_errors() -> tuple[type[BaseException], ...]:
    """What MLflow and the HTTP layer under it raise when the server fails: MlflowException,
    requests' errors (OSError's), a raw urllib3 error that escaped requests, and OSError."""
    from mlflow.exceptions import MlflowException

    found: list[type[BaseException]] = [MlflowException, OSError]
    try:
        import urllib3.exceptions

        found.append(urllib3.exceptions.HTTPError)
    except ImportError:  # pragma: no cover - requests depends on urllib3
        pass
    return tuple(found)


class MlflowCalls:
    """The call discipline the adapter's parts share; ``uri`` and ``client`` are set by the
    registry's constructor."""

    uri: str
    client: MlflowClient

    def describe(self) -> str:
        return redact(self.uri)

    def _call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """One metadata call: against a server, all its attempts end within the deadline."""
        return self._mapped(self._run, fn, *args, **kwargs)

    def _run(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        if not self.uri.startswith(("http://", "https://")):
            return fn(*args, **kwargs)  # a local store: no network to wait on
        return self._bounded(fn, *args, **kwargs)

    def _lookup(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """``fn`` as ``_call`` makes it, but None where MLflow answers that what it looks up
        does not exist (a run, a version, an alias, a model)."""
        from mlflow.exceptions import MlflowException

        def call() -> Any:
            try:
                return fn(*args, **kwargs)
            except MlflowException as err:
                if is_not_found(err):
                    return _MISSING
                raise

        call.__name__ = getattr(fn, "__name__", "a call")
        found = self._call(call)
        return None if found is _MISSING else found

    def _transfer(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """An artifact upload or download: as long as bytes flow (each read has its timeout)."""
        return self._mapped(fn, *args, **kwargs)

    def _mapped(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """``fn``, with MLflow's and its HTTP layer's errors turned into one ServiceError line
        (an error of mlops-ci's own, raised inside ``fn``, passes as it is)."""
        from mlops_ci.errors import MlopsError

        try:
            return fn(*args, **kwargs)
        except MlopsError:
            raise
        except _transport_errors() as err:
            raise self._service_error(err) from None

    def _bounded(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """``fn`` in a daemon thread, given up after the deadline. MLflow retries a read that
        timed out like a refused connection, so a server that accepts and never answers held a
        call for every attempt's timeout plus backoff (134 s with the defaults); the deadline
        ends it near the timeout the user set. A call given up may still land on the server
        later; the next step reads what is there, as after any lost answer."""
        per_attempt = float_env("MLFLOW_HTTP_REQUEST_TIMEOUT", 30.0)
        deadline = per_attempt + DEADLINE_MARGIN_S
        outcome: dict[str, Any] = {}
        finished = threading.Event()

        def run() -> None:
            try:
                outcome["value"] = fn(*args, **kwargs)
            except BaseException as err:  # handed to the caller's thread
                outcome["error"] = err
            finally:
                finished.set()

        threading.Thread(target=run, name="mlflow-call", daemon=True).start()
        if not finished.wait(deadline):
            what = getattr(fn, "__name__", "a call")
            raise ServiceError(
                f"MLflow at {self.describe()} gave no usable answer to {what} within "
                f"{deadline:g} s (MLFLOW_HTTP_REQUEST_TIMEOUT={per_attempt:g} s, plus "
                f"{DEADLINE_MARGIN_S:g} s for retries)",
                hint="check that the server is up and not overloaded, or raise "
                "MLFLOW_HTTP_REQUEST_TIMEOUT",
            )
        if "error" in outcome:
            raise outcome["error"]
        return outcome["value"]

    def _service_error(self, err: BaseException) -> ServiceError:
        """One line naming the server (never its credentials) and what went wrong."""
        text = redact_urls(str(err).strip())
        first = text.splitlines()[0] if text else type(err).__name__
        answered = re.search(r"too many (\d{3}) error responses", first)
        if answered:  # it answered, with an error, every time: not a connection problem
            retries = os.environ.get("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "?")
            first = (
                f"answered HTTP {answered.group(1)} to every attempt ({retries} retries, "
                f"MLFLOW_HTTP_REQUEST_MAX_RETRIES) of " + first.split(" failed with exception")[0]
            )
        elif "Max retries exceeded" in first or "Connection refused" in first:
            first = "cannot connect (" + first.split(" failed with exception")[0] + ")"
        return ServiceError(
            f"MLflow at {self.describe()} failed: {first[:300]}",
            hint="check MLFLOW_TRACKING_URI and that the server is reachable",
        )
