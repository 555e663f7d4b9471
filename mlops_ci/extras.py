"""Optional parts of mlops-ci: what each extra brings, and one error naming the extra to install.

The core install carries what the pipeline's steps need (train, compare, register, package,
deploy locally, report). A part only one verb uses is an extra, so a CI job that never serves
or posts to GitHub does not download it; the verb that needs a missing part says which extra
brings it, as one line, before importing anything.
"""

from __future__ import annotations

import importlib.util
import json
import shlex
from importlib import metadata
from urllib.parse import unquote, urlsplit
from urllib.request import url2pathname

from mlops_ci.credentials import safe_url
from mlops_ci.errors import MlopsError

DISTRIBUTION = "mlops-ci"

# extra -> the modules it brings that the verbs import (checked without importing them).
EXTRAS: dict[str, tuple[str, ...]] = {
    "serve": ("fastapi", "uvicorn", "prometheus_client"),
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
            hint=install_hint(extra),
        )


def _direct_url() -> str | None:
    """PEP 610's record of where this mlops-ci was installed from (None: from an index)."""
    try:
        return metadata.distribution(DISTRIBUTION).read_text("direct_url.json")
    except metadata.PackageNotFoundError:
        return None


def install_hint(extra: str, direct_url: str | None = None) -> str:
    """The pip command that adds ``extra`` to this install, in the form it was installed in:
    from a package index ``pip install 'mlops-ci[serve]'``; from a folder
    ``pip install '/src/mlops-ci[serve]'`` (``-e`` when editable); from a wheel
    ``pip install '/dist/mlops_ci-….whl[serve]'``; from a VCS or other URL,
    ``pip install 'mlops-ci[serve] @ URL'`` (no credentials). ``direct_url`` is that
    record's text (None: read this install's)."""
    text = _direct_url() if direct_url is None else direct_url  # "": installed from an index
    index_form = f"pip install {shlex.quote(f'{DISTRIBUTION}[{extra}]')}"
    if not text:
        return index_form
    try:
        record = json.loads(text)
        url = str(record["url"])
    except (ValueError, KeyError, TypeError):
        return index_form
    parts = urlsplit(url)
    if parts.scheme == "file" and "vcs_info" not in record:
        local = url2pathname(unquote(parts.path))
        editable = bool((record.get("dir_info") or {}).get("editable"))
        return f"pip install {'-e ' if editable else ''}{shlex.quote(f'{local}[{extra}]')}"
    vcs = (record.get("vcs_info") or {}).get("vcs")
    shown = safe_url(f"{vcs}+{url}" if vcs and not url.startswith(f"{vcs}+") else url, userinfo="")
    return f"pip install {shlex.quote(f'{DISTRIBUTION}[{extra}] @ {shown}')}"
