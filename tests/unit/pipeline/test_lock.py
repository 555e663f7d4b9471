"""The lock file: written in a stable order (a diff shows what changed), read back the same,
anything else refused with its line."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlops_ci.errors import InputError
from mlops_ci.pipeline.lock import Locked, LockFile, lock_path, read_lock, render

A, B, C = "a" * 64, "b" * 64, "c" * 64

EXPECTED = f"""\
# mlops.lock: written by `mlops-ci train`; commit it with the code (as DVC's dvc.lock).
# A stage's outs are restored from .mlops/cache or an MLflow run only when its key is the one
# below, and each file only when its sha256 is the one below. Do not edit it by hand.
schema: 1
stages:
  prepare:
    key: {A}
    cmd: '{{python}} prepare.py'
    environment: {C}
    deps:
    - path: data/raw/iris.csv
      sha256: {B}
    - path: prepare.py
      sha256: {C}
    params:
      seed: 0
      test_size: 0.3
    outs:
    - path: data/prepared/test.csv
      sha256: {B}
    - path: data/prepared/train.csv
      sha256: {A}
"""


def prepare() -> Locked:
    return Locked(
        key=A,
        command="{python} prepare.py",
        environment=C,
        deps={"prepare.py": C, "data/raw/iris.csv": B},
        params={"test_size": 0.3, "seed": 0},
        outs={"data/prepared/train.csv": A, "data/prepared/test.csv": B},
    )


def test_the_lock_file_is_written_in_a_stable_order_and_read_back(tmp_path: Path) -> None:
    assert lock_path(tmp_path / "mlops.yaml") == tmp_path / "mlops.lock"
    assert render({"prepare": prepare()}) == EXPECTED
    lock = read_lock(tmp_path / "mlops.lock")
    assert lock.stages == {} and lock.entry("prepare", A) is None  # none yet: nothing trusted
    assert lock.put("prepare", prepare(), ["prepare", "train"]) is True
    assert (tmp_path / "mlops.lock").read_text() == EXPECTED
    assert lock.put("prepare", prepare(), ["prepare", "train"]) is False  # same text: untouched
    again = read_lock(tmp_path / "mlops.lock")
    assert again.stages == {"prepare": prepare()}
    assert again.entry("prepare", A) == prepare() and again.entry("prepare", B) is None


def test_stages_are_kept_in_run_order_and_those_gone_dropped(tmp_path: Path) -> None:
    lock = LockFile(tmp_path / "mlops.lock")
    other = Locked(B, "python t.py", C, {}, {}, {"m.joblib": A})
    lock.put("train", other, ["prepare", "train"])
    lock.put("prepare", prepare(), ["prepare", "train"])
    assert list(read_lock(lock.path).stages) == ["prepare", "train"]
    lock.put("train", other, ["train"])  # prepare is no longer a stage of the pipeline
    assert list(read_lock(lock.path).stages) == ["train"]


@pytest.mark.parametrize(
    ("edit", "said"),
    [
        (("schema: 1", "schema: 2"), "mlops.lock:4: schema: a lock file has `schema: 1`"),
        ((f"key: {A}", "key: 12"), "mlops.lock:7: stages.prepare.key: not a sha256"),
        (
            ("path: data/prepared/test.csv", "path: /etc/passwd"),
            "mlops.lock:19: stages.prepare.outs.0.path: '/etc/passwd' is not a normalised path",
        ),
        (
            ("path: data/prepared/test.csv", "path: data/../../x"),
            "mlops.lock:19: stages.prepare.outs.0.path: 'data/../../x' is not a normalised",
        ),
        (("  prepare:", "  ../x:"), "mlops.lock:7: stages.../x: not a stage name"),
        (
            (f"      sha256: {A}", "      sha256: no"),
            "mlops.lock:22: stages.prepare.outs.1.sha256: not a sha",
        ),
        (("stages:", "stages: ["), "mlops.lock:7: not valid YAML"),
    ],
)
def test_a_lock_file_that_is_not_one_is_refused_with_its_line(
    tmp_path: Path, edit: tuple[str, str], said: str
) -> None:
    (tmp_path / "mlops.lock").write_text(EXPECTED.replace(*edit))
    with pytest.raises(InputError) as caught:
        read_lock(tmp_path / "mlops.lock")
    assert str(caught.value).startswith(said), str(caught.value)
    assert "delete it" in (caught.value.hint or "")
