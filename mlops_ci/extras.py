"""Optional parts of mlops-ci: what each extra brings, and one error naming the extra to install.

The core install carries what the pipeline's steps need (train, compare, register, package,
deploy locally, report). A part only one verb uses is an extra, so a CI job that never serves
or posts to GitHub does not download it; the verb that needs a missing part says which extra
brings it, as one line, before importing anything.
"""

from __future__ import annotations

import importlib.util

from mlops_ci.errors import MlopsError

# extra -> the modules it brings that the verbs import (checked without importing them).
EXTRAS: dict[str, tuple[str, ...]] = {
    "serve": ("fastapi", "uvicorn", "prometheus_client", "aiohttp"),
    "github": ("github",),
    "parquet": ("pyarrow",),
    "batch": ("pyarrow",),
    "dask": ("distributed", "pyarrow"),
    "kubernetes": ("kubernetes",),
}


def missing(extra: str) -> list[str]:
    """The modules of ``extra`` this environment lacks."""
    return [m for m in EXTRAS[extra] if importlib.util.find_spec(m) is None]


def require(extra: str, what: str) -> None:
    """Raise one line naming ``extra`` when ``what`` (a verb or a file) cannot run without it."""
    lacking = missing(extra)
    if lacking:
        raise MlopsError(
            f"{what} needs {', '.join(lacking)} (the {extra} extra)",
            hint=f"pip install 'mlops-ci[{extra}]'",
        )
