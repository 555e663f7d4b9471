"""Which MLflow tracking URI a project uses, and where that came from (for messages):
MLFLOW_TRACKING_URI, else registry.tracking_uri with a relative sqlite path taken relative to
mlops.yaml."""

from __future__ import annotations

import os
import re
from typing import TYPE_CHECKING

from mlops_ci.credentials import safe_url

if TYPE_CHECKING:
    from mlops_ci.config.types import Config


# An Azure Pipelines macro the pipeline never defined stays as written, "$(NAME)": the
# templates' `MLFLOW_TRACKING_URI: $(MLFLOW_TRACKING_URI)` then means "not set", as an unset
# `${{ vars.NAME }}` (empty) does on GitHub.
_UNEXPANDED_MACRO = re.compile(r"\$\([\w.]+\)")


# What MLflow takes for a registry; anything else it would read as a folder (its file store).
URI_FORMS = "sqlite:///PATH, http(s)://HOST, postgresql://, mysql://, mssql:// or databricks"


def _env_tracking_uri() -> str | None:
    value = os.environ.get("MLFLOW_TRACKING_URI", "").strip()
    return None if not value or _UNEXPANDED_MACRO.fullmatch(value) else value


def resolve_tracking_uri(config: Config, honour_env: bool = True) -> tuple[str, str]:
    """(the tracking URI, where it comes from for messages): MLFLOW_TRACKING_URI wins over
    registry.tracking_uri; a relative sqlite path is taken relative to mlops.yaml."""
    from_env = _env_tracking_uri() if honour_env else None
    if from_env:
        uri, source = from_env, "MLFLOW_TRACKING_URI"
    else:
        uri, source = config.registry.tracking_uri, f"{config.path.name}: registry.tracking_uri"
    match = re.match(r"^sqlite:///(?!/)(.+)$", uri)
    if match:
        db = config.resolve(match.group(1))
        db.parent.mkdir(parents=True, exist_ok=True)
        uri = f"sqlite:///{db}"
    return uri, source


def redact(uri: str) -> str:
    """The URI without credentials, for messages."""
    return safe_url(uri)
