"""One exception class per exit code, so the CLI has a single place that maps failures to codes.

Exit codes (shared by every verb and CI adapter):
0 ok; 1 the gate said no (a verdict, not a crash); 2 bad input or config; 3 an outside service
failed after retries.
"""

from __future__ import annotations

from pathlib import Path


class MlopsError(Exception):
    """Base class: ``str(err)`` is the one-line message, ``hint`` an optional next step."""

    exit_code = 2

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint


class ConfigError(MlopsError):
    """mlops.yaml is missing or invalid; ``problems`` holds one line per problem."""

    def __init__(
        self, problems: list[str], hint: str | None = None, file: Path | None = None
    ) -> None:
        super().__init__("\n".join(problems), hint)
        self.problems = problems
        self.file = file  # the config file, for CI annotations that point at it


class InputError(MlopsError):
    """A file, column, metric, run or alias given to a step is wrong or missing."""


class TrainingError(MlopsError):
    """The user's training command failed or did not write what mlops.yaml declares."""


class GateFailed(MlopsError):
    """The gate refused: a verdict, not a crash."""

    exit_code = 1


class ServiceError(MlopsError):
    """An outside service (MLflow server, GitHub, a webhook) failed after retries."""

    exit_code = 3


class Terminated(BaseException):
    """SIGTERM or SIGINT reached a verb that ends its work cleanly (train ends its command's
    process group and records the kill): exit 128 + the signal, as a shell reports it. A
    BaseException, so that no ``except Exception`` on the way swallows it."""

    def __init__(self, signum: int) -> None:
        import signal

        self.signum = signum
        self.name = signal.Signals(signum).name
        self.exit_code = 128 + signum
        super().__init__(f"terminated by {self.name}")
