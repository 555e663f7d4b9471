"""sha256 manifests of model artifacts: recorded when a model is registered or packaged, and
verified by everything that loads it later, so a swapped or corrupted file is refused."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from mlops_ci.errors import MlopsError
from mlops_ci.provenance import sha256_file

MANIFEST = "manifest.json"
# MLflow rewrites this file inside a logged model whenever the model is registered.
_BOOKKEEPING = {MANIFEST, "registered_model_meta"}


class IntegrityError(MlopsError):
    """An artifact's content is not what was recorded (exit 2: do not load it)."""


def file_manifest(folder: Path) -> dict[str, str]:
    """sha256 of every file under ``folder`` (but manifests and MLflow's registration note)."""
    return {
        p.relative_to(folder).as_posix(): sha256_file(p)
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name not in _BOOKKEEPING
    }


def digest(manifest: dict[str, str]) -> str:
    """One sha256 for a whole manifest (what a registry tag holds)."""
    return hashlib.sha256(json.dumps(manifest, sort_keys=True).encode()).hexdigest()


def verify(folder: Path, expected: dict[str, str], what: str) -> None:
    """Refuse ``folder`` unless it holds exactly the files and contents of ``expected``."""
    actual = file_manifest(folder)
    changed = sorted(k for k in expected if actual.get(k) != expected[k])
    extra = sorted(set(actual) - set(expected))
    if changed or extra:
        detail = ", ".join(
            [*(f"{k} changed or missing" for k in changed), *(f"{k} unexpected" for k in extra)]
        )
        raise IntegrityError(
            f"{what}: sha256 mismatch ({detail}); refusing to load it",
            hint="the artifact was altered after it was recorded: re-register or re-package it",
        )


def verify_digest(folder: Path, expected_digest: str, what: str) -> dict[str, str]:
    """Check ``folder`` against a recorded manifest digest; returns the manifest."""
    manifest = file_manifest(folder)
    if digest(manifest) != expected_digest:
        raise IntegrityError(
            f"{what}: sha256 {digest(manifest)[:12]} is not the recorded {expected_digest[:12]}; "
            "refusing to load it",
            hint="the artifact was altered after it was recorded: re-register or re-package it",
        )
    return manifest
