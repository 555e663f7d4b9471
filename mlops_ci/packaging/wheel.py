"""A wheel of the running mlops-ci, for the serving image to install without a package index.

mlops-ci is not necessarily published (a fork, a dev install, an unreleased version), so the
build context carries the very code that packaged the model: the ``mlops_ci`` package as it is
installed here (an editable install reads the source tree), without the bundled examples and
CI templates, which serving does not need. The zip is deterministic (sorted names, a fixed
timestamp), so the same code gives the same sha256.
"""

from __future__ import annotations

import base64
import hashlib
import zipfile
from importlib import metadata
from pathlib import Path

import mlops_ci

DIST = "mlops-ci"
_EPOCH = (1980, 1, 1, 0, 0, 0)
_SKIP = {"__pycache__", "_bundled"}


def wheel_name() -> str:
    version = metadata.version(DIST)
    return f"mlops_ci-{version}-py3-none-any.whl"


def build_wheel(folder: Path) -> Path:
    """Write the wheel into ``folder``; returns its path."""
    version = metadata.version(DIST)
    info = f"mlops_ci-{version}.dist-info"
    package = Path(mlops_ci.__file__).resolve().parent
    entries: list[tuple[str, bytes]] = []
    for path in sorted(package.rglob("*")):
        relative = path.relative_to(package.parent)
        if path.is_file() and not _SKIP & set(relative.parts) and path.suffix != ".pyc":
            entries.append((relative.as_posix(), path.read_bytes()))
    dist = metadata.distribution(DIST)
    entries.append((f"{info}/METADATA", (dist.read_text("METADATA") or "").encode()))
    entries.append(
        (f"{info}/entry_points.txt", (dist.read_text("entry_points.txt") or "").encode())
    )
    entries.append(
        (
            f"{info}/WHEEL",
            b"Wheel-Version: 1.0\nGenerator: mlops-ci\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        )
    )
    record = "".join(f"{name},{_hash(data)},{len(data)}\n" for name, data in entries)
    entries.append((f"{info}/RECORD", (record + f"{info}/RECORD,,\n").encode()))
    folder.mkdir(parents=True, exist_ok=True)
    out = folder / wheel_name()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in entries:
            item = zipfile.ZipInfo(name, date_time=_EPOCH)
            item.external_attr = 0o644 << 16
            item.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(item, data)
    return out


def ship(folder: Path) -> Path:
    """The wheel and ``wheel.json`` (its file name and sha256) in ``folder``: what the Azure
    Pipelines task installs, since no package index has mlops-ci. Returns the wheel."""
    import json

    from mlops_ci.provenance import sha256_file
    from mlops_ci.records import write_text_atomic

    for old in folder.glob("mlops_ci-*.whl"):
        old.unlink()
    wheel = build_wheel(folder)
    record = {"file": wheel.name, "sha256": sha256_file(wheel)}
    write_text_atomic(folder / "wheel.json", json.dumps(record, indent=2) + "\n")
    return wheel


def _hash(data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"sha256={digest}"


if __name__ == "__main__":  # python -m mlops_ci.packaging.wheel FOLDER
    import sys

    if len(sys.argv) != 2:
        sys.exit("usage: python -m mlops_ci.packaging.wheel FOLDER  (writes wheel + wheel.json)")
    print(ship(Path(sys.argv[1])))
