"""The wheel of this mlops-ci that the serving image installs."""

from __future__ import annotations

from pathlib import Path


def test_the_wheel_of_this_mlops_ci_is_deterministic_and_holds_what_serving_imports(
    tmp_path: Path,
) -> None:
    import zipfile

    from mlops_ci.packaging.wheel import build_wheel
    from mlops_ci.provenance import sha256_file

    first = build_wheel(tmp_path / "a")
    second = build_wheel(tmp_path / "b")
    assert first.name == second.name and first.name.startswith("mlops_ci-")
    assert sha256_file(first) == sha256_file(second)
    names = zipfile.ZipFile(first).namelist()
    assert "mlops_ci/serve/app.py" in names and "mlops_ci/config/schema/mlops.schema.json" in names
    assert not any("_bundled" in n or "__pycache__" in n for n in names)
    info = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
    assert info and b"mlops-ci" in zipfile.ZipFile(first).read(info[0])
