"""Any model you can load in Python, from a project folder to answers served elsewhere.

Each model below (issue 39: MLflow pyfunc folders with local code, a transformer of the user's
own through ``model.code_paths``, CatBoost, statsmodels, a model handed in with ``train
--model``, bool and category columns, a tuned threshold, free text) is trained by its project's
own command, or handed in, and taken through the real chain: `validate`, `train` (MLflow on
SQLite), `compare`, `register`, `promote`, `package` (build context only), then a real
`mlops-ci serve` process (``/score`` and v2) and `mlops-ci batch-score`, both started in a
fresh folder with only the package's model folder copied there, the project moved away and no
PYTHONPATH anywhere: what the model needs (its local modules, its pyfunc code) must travel with
the package. Every answer is held against the model itself, loaded here: labels equal,
probabilities/values within the tolerance package checked. The table (model x path, format,
rows differing, max |diff|) is printed; run with
``pytest tests/integration/test_any_python_model.py -s`` to see it. The model sources are
plain files in tests/support/anymodels/, copied into each project.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import httpx
import joblib
import numpy as np
import pandas as pd
import pytest

from mlops_ci.config.types import load_config
from mlops_ci.registry.mlflow import MlflowRegistry
from mlops_ci.serve.model import read_spec
from mlops_ci.steps.compare import compare
from mlops_ci.steps.handin import TAG_HANDED_BY, TAG_HANDED_IN, TAG_HANDED_SHA256
from mlops_ci.steps.package import PackageResult, package
from mlops_ci.steps.promote import promote
from mlops_ci.steps.register import register
from mlops_ci.steps.train import train
from mlops_ci.steps.validate import validate
from tests.integration.test_conformance import dataset, gap, json_rows, native_answers, v2_body
from tests.support.serve_helpers import serving

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

SOURCES = Path(__file__).resolve().parents[1] / "support" / "anymodels"
NUMBERS = ["x1", "x 2", "a|b", "1st", "größe"]
FEATURES = [*NUMBERS, "colour"]


@dataclass(frozen=True)
class Case:
    task: str
    flavor: str  # model.flavor
    sources: dict[str, str]  # file in the project -> its source in tests/support/anymodels
    command: str | None  # train.command; None: the model is handed in (train --model)
    output: str = "outputs/model.joblib"  # train.outputs.model
    features: tuple[str, ...] = tuple(FEATURES)
    code_paths: tuple[str, ...] = ()  # model.code_paths
    binary: bool = False  # labels yes/no instead of yes/no/maybe
    text_gaps: bool = True  # missing colours in the data
    requires: tuple[str, ...] = ()  # distributions the package's requirements.txt must pin
    dtypes: dict[str, str] = field(default_factory=dict)  # evaluate.dtypes
    tuned_threshold: bool = False  # predict is not the arg-max of predict_proba


def pyfunc(task: str) -> Case:
    """train_pyfunc.py's model: mylib.py's pre- and post-processing around scikit-learn."""
    return Case(
        task,
        "pyfunc",
        {"train.py": "train_pyfunc.py", "mylib.py": "mylib.py"},
        f"{{python}} train.py {task}",
        output="outputs/model",
        requires=("scikit-learn", "mlflow-skinny"),
    )


CASES: dict[str, Case] = {
    "pyfunc classifier (mylib pre/post, frame of probabilities)": pyfunc("classification"),
    "Pipeline with custom.py's transformer (code_paths)": Case(
        "classification",
        "sklearn",
        {"train.py": "train_custom.py", "custom.py": "custom.py"},
        "{python} train.py",
        code_paths=("custom.py",),
    ),
    "statsmodels Logit (pyfunc)": Case(
        "classification",
        "pyfunc",
        {"train.py": "train_statsmodels.py"},
        "{python} train.py",
        output="outputs/model",
        features=("x 2", "a|b", "1st", "größe"),
        binary=True,
        requires=("statsmodels", "mlflow-skinny"),
    ),
    "CatBoostClassifier (native categorical)": Case(
        "classification",
        "sklearn",
        {"train.py": "train_catboost.py"},
        "{python} train.py",
        text_gaps=False,
        requires=("catboost",),
    ),
    "handed in: HistGradientBoostingClassifier (train --model)": Case(
        "classification", "sklearn", {}, None
    ),
    # one chain for both (CI time): the kinds, and LightGBM's own name for 'x 2' (x_2)
    "LGBMClassifier on bool and category columns (evaluate.dtypes) and 'x 2'": Case(
        "classification",
        "sklearn",
        {"train.py": "train_kinds.py"},
        "{python} train.py",
        features=("x1", "x 2", "a|b", "1st", "colour", "member"),
        dtypes={"colour": "category", "member": "bool"},
        requires=("lightgbm",),
    ),
    "FixedThresholdClassifier(threshold=0.3), yes/no": Case(
        "classification",
        "sklearn",
        {"train.py": "train_threshold.py"},
        "{python} train.py",
        binary=True,
        text_gaps=False,
        tuned_threshold=True,
    ),
    "TfidfVectorizer in a ColumnTransformer": Case(
        "classification",
        "sklearn",
        {"train.py": "train_tfidf.py"},
        "{python} train.py",
        features=("x1", "x 2", "a|b", "note"),
    ),
}


WORDS = ["late", "paid", "refund", "new", "loyal", "called", "twice", "again", "happy"]


def data(case: Case, rows: int, seed: int) -> pd.DataFrame:
    """test_conformance's data (numbers with gaps, a colour), with a bool column (member) and
    a free-text one (note) that tell something of the target."""
    frame = dataset(case.task, rows, seed)
    rng = np.random.default_rng(seed + 100)
    frame["member"] = (frame["x 2"] > 0) ^ (rng.random(rows) < 0.2)
    words = rng.choice(WORDS, (rows, 3))
    hint = np.where(frame["target"] == "yes", "happy", np.where(rng.random(rows) < 0.5, "late", ""))
    frame["note"] = [" ".join([*w, h]).strip() for w, h in zip(words, hint, strict=True)]
    if case.binary:
        frame["target"] = np.where(frame["target"] == "yes", "yes", "no")
    if not case.text_gaps:
        frame["colour"] = frame["colour"].fillna("grey")
    return frame[[*case.features, "target"]]


def project(tmp_path: Path, case: Case) -> Path:
    """The user's project: data, the model's sources and mlops.yaml (no train section for a
    model handed in)."""
    root = tmp_path / "project"
    (root / "data").mkdir(parents=True)
    data(case, 300, 1).to_csv(root / "data" / "train.csv", index=False)
    data(case, 120, 2).to_csv(root / "data" / "test.csv", index=False)
    for name, source in case.sources.items():
        shutil.copy(SOURCES / source, root / name)
    model: dict[str, Any] = {"name": "any-model", "flavor": case.flavor, "task": case.task}
    if case.code_paths:
        model["code_paths"] = list(case.code_paths)
    metric = "accuracy" if case.task == "classification" else "rmse"
    dtypes = f", dtypes: {json.dumps(case.dtypes)}" if case.dtypes else ""
    train_section = (
        ""
        if case.command is None
        else f"""train:
  command: {json.dumps(case.command)}
  inputs: [data/train.csv, {", ".join(case.sources)}]
  outputs: {{model: {case.output}, metrics: outputs/metrics.json}}
"""
    )
    (root / "mlops.yaml").write_text(
        f"""version: 1
model: {json.dumps(model)}
{train_section}evaluate:
  {{data: data/test.csv, target: target, metrics: [{metric}],
    importance: {{enabled: false}}{dtypes}}}
registry: {{tracking_uri: "sqlite:///.mlops/mlflow.db"}}
package:
  profile: {{single_row_runs: 10, batch_sizes: [1, 32]}}
"""
    )
    return root


def clean_env() -> dict[str, str]:
    """This process's environment, which has no PYTHONPATH, without a tracking URI."""
    assert "PYTHONPATH" not in os.environ
    return {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}


def mlops_ci(*args: str, cwd: Path) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "mlops_ci", *args],
        cwd=cwd,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, f"mlops-ci {args[0]}: {done.stdout}\n{done.stderr}"
    return done.stdout


def handed_model(tmp_path: Path, case: Case) -> Path:
    """A model trained elsewhere: fitted here, saved outside the project."""
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.pipeline import make_pipeline

    from tests.integration.test_conformance import ordinal_text

    frame = data(case, 300, 1)
    model = make_pipeline(
        ordinal_text(),
        HistGradientBoostingClassifier(max_iter=30, categorical_features=[0], random_state=0),
    ).fit(frame[list(case.features)], frame["target"])
    path = tmp_path / "elsewhere" / "model.joblib"
    path.parent.mkdir()
    joblib.dump(model, path)
    return path


def run_chain(
    root: Path, case: Case, handed: Path | None
) -> tuple[MlflowRegistry, str, PackageResult]:
    """validate, train (or train --model), compare, register, promote, package @production;
    returns the registry, the run id and the package result."""
    config = load_config(root)
    validate(config)
    reg = MlflowRegistry.for_config(config)
    if handed is None:
        run_id = train(config, reg).run_id
    else:  # the CLI, from another folder, as a user hands a model in
        mlops_ci("train", "-c", str(root), "--model", str(handed), cwd=handed.parent)
        run_id = json.loads((root / ".mlops" / "train.json").read_text())["run_id"]
    compare(config, reg, run_id)
    version = register(config, reg, run_id).version
    promote(config, reg, "@candidate", by="conformance", reason="issue 39")
    assert reg.get_version_by_alias("any-model", "production").version == version
    return reg, run_id, package(config, reg, "@production", build=False)


@contextmanager
def importable(folder: Path) -> Iterator[None]:
    """``folder`` on this process's import path while the model is loaded, then gone again
    with the modules imported from it."""
    before = set(sys.modules)
    sys.path.insert(0, str(folder))
    try:
        yield
    finally:
        sys.path[:] = [p for p in sys.path if p != str(folder)]
        for name in set(sys.modules) - before:
            if str(getattr(sys.modules[name], "__file__", "") or "").startswith(str(folder)):
                del sys.modules[name]


def reference(root: Path, case: Case, handed: Path | None, frame: pd.DataFrame) -> Any:
    """The model itself, loaded here, scoring ``frame``: (labels or None, scores, the labels
    of the scores' columns)."""
    path = handed or root / case.output
    if case.flavor != "pyfunc":
        with importable(root):
            model = joblib.load(path)
        labels, scores = native_answers(model, frame)
        if labels is None:
            return None, scores, []
        # the model's own predict (not the arg-max: a threshold's); CatBoost's is a column
        labels = [str(v) for v in np.asarray(model.predict(frame)).ravel()]
        return labels, scores, [str(c) for c in model.classes_]
    import mlflow.pyfunc

    with importable(path / "code"):
        out = mlflow.pyfunc.load_model(str(path)).predict(frame)
    if isinstance(out, pd.DataFrame) and out.shape[1] > 1:
        scores = out.to_numpy(np.float64)
        classes = [str(c) for c in out.columns]
        return [classes[i] for i in scores.argmax(axis=1)], scores, classes
    return None, np.asarray(out, np.float64).reshape(-1, 1), []


def served_answers(
    url: str, frame: pd.DataFrame, classifier: bool
) -> dict[str, tuple[list[str] | None, np.ndarray]]:
    """/score (records with nulls) and v2 (named tensors): (labels or None, scores)."""
    scored = httpx.post(f"{url}/score", json={"inputs": json_rows(frame)}, timeout=30)
    assert scored.status_code == 200, scored.text
    body = scored.json()
    got = {
        "/score": (
            body["predictions"] if classifier else None,
            np.asarray(body.get("probabilities", body["predictions"])),
        )
    }
    request = v2_body(frame)  # numbers FP64 and the colour BYTES; the other kinds their own
    for tensor in request["inputs"]:
        kind = frame[tensor["name"]].dtype.kind
        tensor["datatype"] = {"b": "BOOL", "O": "BYTES"}.get(kind, tensor["datatype"])
    infer = httpx.post(f"{url}/v2/models/any-model/infer", json=request, timeout=30)
    assert infer.status_code == 200, infer.text
    outputs = {o["name"]: o["data"] for o in infer.json()["outputs"]}
    got["v2"] = (
        [str(v) for v in outputs["label"]] if classifier else None,
        np.asarray(outputs.get("probabilities", outputs.get("variable"))),
    )
    return got


def requirements(packaged: PackageResult) -> dict[str, str]:
    """The package's requirements.txt: distribution -> its line."""
    lines = (Path(packaged.context) / "requirements.txt").read_text().splitlines()
    return {line.split("==")[0].split()[0].lower(): line for line in lines if line.strip()}


TABLE: list[str] = []


def check(name: str, tmp_path: Path) -> None:
    """The chain for CASES[name], every answer held against the model itself."""
    case = CASES[name]
    env = clean_env()
    root = project(tmp_path, case)
    handed = handed_model(tmp_path, case) if case.command is None else None
    handed_bytes = handed.read_bytes() if handed else b""
    reg, run_id, packaged = run_chain(root, case, handed)
    assert packaged.served_parity is not None and packaged.served_parity.passed
    if case.tuned_threshold:
        threshold_is_said(root, reg, packaged)
    if packaged.format != "onnx":  # auto fell back to the native model: it says why
        assert packaged.note and packaged.note.startswith("ONNX: not used — "), packaged.note
    tol = packaged.served_parity.tolerance
    pinned = requirements(packaged)
    for dist in case.requires:
        assert dist in pinned, f"{dist} not in requirements.txt: {sorted(pinned)}"
        assert f"=={metadata.version(dist)}" in pinned[dist], pinned[dist]
    if handed is not None:
        tags = reg.get_run(run_id).tags
        assert tags[TAG_HANDED_IN] == "true" and tags[TAG_HANDED_BY]
        assert tags[TAG_HANDED_SHA256] == hashlib.sha256(handed_bytes).hexdigest()
        assert handed.read_bytes() == handed_bytes  # the handed file untouched

    frame = pd.read_csv(root / "data" / "test.csv", keep_default_na=False, na_values=[""])
    features = frame[list(case.features)]
    typed = features.astype(case.dtypes)  # as the training command read it
    want_labels, want, classes = reference(root, case, handed, typed)
    classifier = want_labels is not None
    moved = np.zeros(len(frame), bool)  # rows whose label is not the likelier class
    if case.tuned_threshold:  # the threshold decides these rows, not the arg-max
        assert want_labels is not None
        moved = np.array(want_labels) != np.array(classes)[want.argmax(axis=1)]
        assert moved.sum() >= 10, moved.sum()

    # Elsewhere: the package's model folder and the rows to score, the project moved away.
    away = tmp_path / "away"
    shutil.copytree(Path(packaged.context) / "model", away / "model")
    shutil.copy(root / "data" / "test.csv", away / "rows.csv")
    root.rename(tmp_path / "moved")
    work = away / "cwd"
    work.mkdir()
    results: dict[str, tuple[int, float]] = {}
    with serving("--model-dir", str(away / "model"), cwd=work, env=env) as srv:
        for path, (labels, scores) in served_answers(srv.url, features, classifier).items():
            results[path] = gap(labels, scores, want_labels, want, tol.atol, tol.rtol)
        if case.tuned_threshold:  # the probabilities' columns, named
            body = httpx.post(f"{srv.url}/score", json={"inputs": json_rows(features.head(3))})
            assert body.json()["classes"] == classes == ["no", "yes"], body.text
    assert "Traceback" not in srv.log(), srv.log()[-3000:]

    out = work / "scored.parquet"
    mlops_ci(
        "batch-score", "--model-dir", str(away / "model"), "--input", str(away / "rows.csv"),
        "--output", str(out), "--processes", "1", cwd=work,
    )  # fmt: skip
    scored = pd.read_parquet(out)
    assert len(scored) == len(frame)
    if want_labels is not None:  # the label and its probability (that label's, not the max)
        got = [str(v) for v in scored["prediction"]]
        mine = want[np.arange(len(want)), [classes.index(v) for v in want_labels]]
        probability = scored["probability"].to_numpy().reshape(-1, 1)
        results["batch-score"] = gap(
            got, probability, want_labels, mine.reshape(-1, 1), tol.atol, tol.rtol
        )
        if moved.any():  # not the row's largest probability
            assert not np.allclose(probability[moved, 0], want.max(axis=1)[moved])
    else:
        values = scored["prediction"].to_numpy().reshape(-1, 1)
        results["batch-score"] = gap(None, values, None, want, tol.atol, tol.rtol)

    spec = read_spec(away / "model")
    assert spec.features == case.features
    kinds = dict(zip(spec.features, spec.kinds, strict=True))
    assert {column: kinds[column] for column in case.dtypes} == case.dtypes
    line = f"| {name} | {packaged.format} | " + " | ".join(
        f"{path}: {rows} rows, {diff:.2g}" for path, (rows, diff) in results.items()
    )
    TABLE.append(line + " |")
    print("\n" + line)
    for path, (rows, diff) in results.items():
        assert rows == 0, f"{name}: {path} differs from the model itself on {rows} rows ({diff})"
        if case.tuned_threshold and path != "v2":  # the native model's own float64 answers
            assert diff <= 1e-12, f"{name}: {path} is {diff} from the model itself"


def threshold_is_said(root: Path, reg: MlflowRegistry, packaged: PackageResult) -> None:
    """skl2onnx would label a tuned threshold's rows by the arg-max: the conversion is refused,
    the native model served, and the note saying so is in package.json (what report reads)
    and on the version."""
    assert packaged.format == "sklearn", packaged.note
    assert packaged.note is not None and "FixedThresholdClassifier" in packaged.note
    assert "threshold (0.3)" in packaged.note
    assert packaged.served_parity is not None and packaged.served_parity.differing_rows == 0
    record = json.loads((root / ".mlops" / "package.json").read_text())
    assert record["note"] == packaged.note
    tags = reg.get_version("any-model", packaged.version).tags
    assert tags["mlops.package.note"] == packaged.note


def cases(*names: str) -> list[Any]:
    return list(names)


# Two classes: two scopes for pytest-xdist's --dist loadscope, which keeps a module's test
# functions on one worker; each half is a minute or two of model processes.
class TestCodeTravelsWithTheModel:
    """pyfunc folders, a local module through model.code_paths."""

    @pytest.mark.parametrize("name", cases(*list(CASES)[:4]))
    def test_every_path_answers_like_the_model_itself(self, name: str, tmp_path: Path) -> None:
        check(name, tmp_path)


class TestLibrariesHandInsAndColumnKinds:
    """CatBoost, a model handed in, bool and category columns, a threshold, free text."""

    @pytest.mark.parametrize("name", cases(*list(CASES)[4:]))
    def test_every_path_answers_like_the_model_itself(self, name: str, tmp_path: Path) -> None:
        check(name, tmp_path)
