"""Files that ship with mlops-ci (the example, CI templates): in the wheel, or in the source tree.

The wheel carries them under ``mlops_ci/_bundled/`` (hatch force-include); an editable install
reads them from the repository beside the package.
"""

from __future__ import annotations

from pathlib import Path

from mlops_ci.errors import MlopsError

_PACKAGE = Path(__file__).resolve().parent


def bundled(relative: str) -> Path:
    """The shipped folder or file at ``relative`` (e.g. ``examples/iris``)."""
    for candidate in (_PACKAGE / "_bundled" / relative, _PACKAGE.parent / relative):
        if candidate.exists():
            return candidate
    raise MlopsError(f"'{relative}' is not shipped with this mlops-ci install ({_PACKAGE})")
