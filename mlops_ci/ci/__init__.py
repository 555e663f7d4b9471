"""CI platform adapters: where step outputs go (GitHub Actions, Azure Pipelines, or nowhere)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Mapping
from pathlib import Path


def emit_outputs(outputs: Mapping[str, str], env: Mapping[str, str] | None = None) -> None:
    """Publish step outputs: GITHUB_OUTPUT in GitHub Actions, ##vso in Azure Pipelines."""
    env = os.environ if env is None else env
    if env.get("GITHUB_OUTPUT"):
        with Path(env["GITHUB_OUTPUT"]).open("a", encoding="utf-8") as fh:
            for key, value in outputs.items():
                if "\n" in value:
                    delimiter = f"ghadelimiter_{uuid.uuid4().hex}"
                    fh.write(f"{key}<<{delimiter}\n{value}\n{delimiter}\n")
                else:
                    fh.write(f"{key}={value}\n")
    elif env.get("TF_BUILD"):
        for key, value in outputs.items():
            first_line = value.splitlines()[0] if value else ""
            print(f"##vso[task.setvariable variable={key};isOutput=true]{first_line}")
