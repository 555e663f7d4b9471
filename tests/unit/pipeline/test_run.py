"""Running stages: a stage's key follows content, never mtime; the lock file is the trust root
of what is restored (a planted MLflow run supplies nothing, a blob edited in the cache is
fetched again or the stage reruns); a record naming a path is refused before anything is
written."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from mlops_ci.config.types import load_config
from mlops_ci.errors import InputError
from mlops_ci.pipeline.cache import StageCache
from mlops_ci.pipeline.run import StageRun, _deps, load_pipeline, run_stages, stage_key
from mlops_ci.pipeline.spec import Stage
from tests.support.stages import GOOD, project

FEATURES, MODEL = "features\n", "model\n"


def test_a_stage_key_changes_with_content_never_with_mtime(tmp_path: Path) -> None:
    pipeline = load_pipeline(load_config(project(tmp_path, GOOD)))
    assert pipeline is not None
    prepare = pipeline.stage("prepare")

    def key() -> str:
        return stage_key(prepare, _deps(tmp_path, prepare.deps, {}, []), {}, "env")

    first = key()
    os.utime(tmp_path / "raw.csv", (1, 1))
    assert key() == first
    (tmp_path / "raw.csv").write_text("y\n")
    assert key() != first


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


class Runner:
    """The stages of GOOD without a process: prepare writes feat/x.csv, train the model."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.ran: list[str] = []

    def __call__(self, stage: Stage, log: Path) -> None:
        self.ran.append(stage.name)
        if stage.name == "prepare":
            (self.root / "feat").mkdir(parents=True, exist_ok=True)
            (self.root / "feat" / "x.csv").write_text(FEATURES)
        else:
            (self.root / "out").mkdir(parents=True, exist_ok=True)
            (self.root / "out" / "model.joblib").write_text(MODEL)


class Planted:
    """An MLflow experiment holding one run tagged for ``stage``: its record and its files."""

    def __init__(self, stage: str, record: dict[str, Any], files: dict[str, str]) -> None:
        self.stage, self.record_, self.files = stage, record, files
        self.run_id = "planted0123456789"

    def find(self, stage: str, key: str) -> str | None:
        return self.run_id if stage == self.stage else None

    def record(self, run_id: str, stage: str) -> dict[str, Any] | None:
        return self.record_

    def fetch(self, run_id: str, stage: str, dest: Path) -> Path:
        for rel, text in self.files.items():
            (dest / "outs" / rel).parent.mkdir(parents=True, exist_ok=True)
            (dest / "outs" / rel).write_text(text)
        (dest / "record.json").write_text(json.dumps(self.record_))
        return dest


def stages(
    root: Path, remote: Any = None, dry_run: bool = False, said: list[str] | None = None
) -> tuple[dict[str, StageRun], Runner]:
    config = load_config(root)
    pipeline = load_pipeline(config)
    assert pipeline is not None
    runner = Runner(root)
    notify = said.append if said is not None else None
    done = run_stages(
        config, pipeline, {"C": 1.0}, "env", runner, remote, dry_run=dry_run, notify=notify
    )
    return {s.name: s for s in done}, runner


def key_of(root: Path, stage: str) -> str:
    """The stage's key, from a dry run (which runs, restores and writes nothing)."""
    return stages(root, dry_run=True)[0][stage].key


def clean_checkout(root: Path) -> None:
    """What a CI runner has: the code (and the lock file, if any), no .mlops, no outs."""
    for path in (".mlops", "feat", "out"):
        shutil.rmtree(root / path, ignore_errors=True)


def holder(root: Path, key: str, files: dict[str, str], name: str = "prepare") -> Planted:
    record = {"name": name, "key": key, "outs": {r: sha(t) for r, t in files.items()}}
    return Planted("prepare", record, files)


def test_a_planted_mlflow_run_supplies_nothing_without_the_lock_file(tmp_path: Path) -> None:
    root = project(tmp_path, GOOD)
    key = key_of(root, "prepare")
    planted = holder(root, key, {"feat/x.csv": "planted\n"})  # consistent with its own record
    done, runner = stages(root, planted)
    assert done["prepare"].state == "ran" and runner.ran == ["prepare", "train"]
    assert done["prepare"].why == (
        "mlops.lock has no entry for it: the outs in MLflow run planted0123456789 are not taken"
    )
    assert (root / "feat" / "x.csv").read_text() == FEATURES


def test_a_planted_run_with_the_locked_key_supplies_only_the_locked_bytes(tmp_path: Path) -> None:
    root = project(tmp_path, GOOD)
    stages(root)  # writes mlops.lock: the repository's word on each stage's outs
    key = key_of(root, "prepare")
    clean_checkout(root)
    # Consistent with its own record, not with the lock file.
    done, runner = stages(root, holder(root, key, {"feat/x.csv": "planted\n"}))
    assert done["prepare"].state == "ran", done["prepare"].why
    assert done["prepare"].why == (
        "MLflow run planted0123456789 holds other outs than mlops.lock names"
    )
    assert (root / "feat" / "x.csv").read_text() == FEATURES
    # Its record copies the lock file's digests, its bytes are others.
    clean_checkout(root)
    liar = holder(root, key, {"feat/x.csv": "planted\n"})
    liar.record_["outs"] = {"feat/x.csv": sha(FEATURES)}
    done, _ = stages(root, liar)
    assert done["prepare"].state == "ran"
    assert done["prepare"].why == (
        "MLflow run planted0123456789: stages/prepare/outs/feat/x.csv does not match its sha256 "
        "in mlops.lock"
    )
    assert (root / "feat" / "x.csv").read_text() == FEATURES
    # The bytes the lock file names are taken from any run.
    clean_checkout(root)
    done, runner = stages(root, holder(root, key, {"feat/x.csv": FEATURES}))
    assert done["prepare"].state == "cached" and "prepare" not in runner.ran
    assert done["prepare"].why == "unchanged; outs restored from MLflow run planted0123456789"
    assert done["prepare"].holder == "planted0123456789"


@pytest.mark.parametrize("name", ["/abs/outside", "../../../../outside", "train"])
def test_a_record_naming_another_stage_or_a_path_is_refused_and_nothing_written(
    tmp_path: Path, name: str
) -> None:
    root = tmp_path / "project"
    root.mkdir()
    project(root, GOOD)
    stages(root)
    key = key_of(root, "prepare")
    clean_checkout(root)
    if name == "/abs/outside":
        name = str(tmp_path / "outside")
    planted = holder(root, key, {"feat/x.csv": FEATURES}, name=name)  # even the right bytes
    with pytest.raises(InputError) as caught:
        stages(root, planted)
    assert str(caught.value).startswith(
        "MLflow run planted0123456789: stages/prepare/record.json: names "
    ) and str(caught.value).endswith("not 'prepare'; refusing it")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["project"]
    assert not (root / ".mlops" / "cache" / "stages").exists() and not (root / "feat").exists()


@pytest.mark.parametrize(
    "outs",
    [
        {"feat/../../outside.csv": sha(FEATURES)},  # leaves the project
        {"/abs/outside.csv": sha(FEATURES)},
        {"a.py": sha(FEATURES)},  # a source file, not an out of the stage
        {"feat/x.csv": "not-a-digest"},
    ],
)
def test_a_record_naming_a_file_outside_the_stage_outs_is_refused(
    tmp_path: Path, outs: dict[str, str]
) -> None:
    root = project(tmp_path, GOOD)
    stages(root)
    key = key_of(root, "prepare")
    clean_checkout(root)
    planted = holder(root, key, {"feat/x.csv": FEATURES})
    planted.record_["outs"] = outs
    with pytest.raises(InputError, match=r"stages/prepare/record.json: out .*; refusing it"):
        stages(root, planted)
    assert (root / "a.py").read_text() == "x\n" and not (root / "feat").exists()


def test_a_blob_edited_in_the_cache_is_fetched_again_or_the_stage_reruns(tmp_path: Path) -> None:
    root = project(tmp_path, GOOD)
    stages(root)
    cache = StageCache(root / ".mlops" / "cache")

    def tamper() -> None:
        cache.blob(sha(FEATURES)).write_text("tampered\n")
        shutil.rmtree(root / "feat")

    # No MLflow run holds the outs: the stage runs, and says why.
    tamper()
    plan, _ = stages(root, dry_run=True)
    assert plan["prepare"].state == "would run"
    why = "feat/x.csv in .mlops/cache did not match its sha256 in mlops.lock"
    assert plan["prepare"].why == f"{why}; mlops.lock names its outs, but no MLflow run holds them"
    done, runner = stages(root)
    assert done["prepare"].state == "ran" and done["prepare"].why == plan["prepare"].why
    assert (root / "feat" / "x.csv").read_text() == FEATURES
    assert cache.blob(sha(FEATURES)).read_text() == FEATURES  # the run put the right bytes back
    # A run holds them: fetched again from it, checked against the lock file.
    tamper()
    legit = holder(root, key_of(root, "prepare"), {"feat/x.csv": FEATURES})
    plan, _ = stages(root, legit, dry_run=True)
    assert (plan["prepare"].state, plan["prepare"].why) == (
        "cached", f"unchanged; outs in MLflow run planted0123456789 (re-fetched: {why})",
    )  # fmt: skip
    said: list[str] = []
    done, runner = stages(root, legit, said=said)
    assert done["prepare"].state == "cached" and "prepare" not in runner.ran
    assert done["prepare"].why == (
        f"unchanged; outs restored from MLflow run planted0123456789 (re-fetched: {why})"
    )
    assert said == [f"stage prepare: {why}; re-fetched from MLflow run planted0123456789"]
    assert (root / "feat" / "x.csv").read_text() == FEATURES


def test_the_lock_file_is_written_as_stages_run_and_a_dry_run_writes_nothing(
    tmp_path: Path,
) -> None:
    root = project(tmp_path, GOOD)
    stages(root, dry_run=True)
    assert not (root / "mlops.lock").exists()
    done, _ = stages(root)
    text = (root / "mlops.lock").read_text()
    assert f"    key: {done['prepare'].key}\n" in text and f"sha256: {sha(FEATURES)}" in text
    assert text.index("  prepare:") < text.index("  train:")  # the order the stages run in
    mtime = (root / "mlops.lock").stat().st_mtime_ns
    again, runner = stages(root)
    assert runner.ran == [] and {s.why for s in again.values()} == {"unchanged; outs in place"}
    assert (root / "mlops.lock").read_text() == text
    assert (root / "mlops.lock").stat().st_mtime_ns == mtime  # unchanged: not rewritten
    # A change reruns the stage, says why against the lock file, and updates its entry.
    (root / "raw.csv").write_text("y\n")
    changed, runner = stages(root)
    assert runner.ran == ["prepare"]  # its outs came out the same: train's key is unchanged
    assert changed["prepare"].why == "deps changed: raw.csv (modified)"
    assert f"key: {changed['prepare'].key}" in (root / "mlops.lock").read_text()
    # The key of before is in .mlops/cache still, but no longer in the lock file: it runs.
    (root / "raw.csv").write_text("x\n")
    back, runner = stages(root)
    assert runner.ran == ["prepare"]
    assert back["prepare"].why == "deps changed: raw.csv (modified)"


def test_a_lock_entry_naming_a_file_outside_the_stage_outs_is_refused(tmp_path: Path) -> None:
    root = project(tmp_path, GOOD)
    stages(root)
    lock = root / "mlops.lock"
    lock.write_text(lock.read_text().replace("path: feat/x.csv", "path: a.py"))
    shutil.rmtree(root / "feat")
    with pytest.raises(InputError, match="mlops.lock: stages.prepare.outs: 'a.py' is not inside"):
        stages(root)
    assert (root / "a.py").read_text() == "x\n"
