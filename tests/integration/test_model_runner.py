"""The model runner (issue 38, item 2): a model file a training command wrote is loaded and
called only in the runner's child, in bubblewrap where it works, so a hostile pickle or a
``.skops`` file naming ``builtins.eval`` finds none of mlops-ci's secrets (not in its own
environment, not through ``/proc``, not through an inherited descriptor), appends to no runner
command file and writes nothing outside its folder; a ``.skops`` file whose types are not on the
allow-list is refused where the child is not isolated.

The payloads (tests/support/hostile_models.py) report what they found over loopback, the way
out a real one would take (the network is not isolated). Before the runner (86c9083), train,
compare, package and serve loaded these files in mlops-ci's own process: the payload found the
secrets in ``os.environ`` and appended to ``GITHUB_ENV``; the tests below say where each would
have failed.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from mlops_ci.errors import InputError, MlopsError
from mlops_ci.model.files import allowed_type
from mlops_ci.runner import ModelRunner
from mlops_ci.sandbox import Isolation, probe
from tests.support.hostile_models import (
    APPENDED,
    COMMAND_FILES,
    FORGE,
    LINK_NAME,
    PLANT_LINK,
    TAMPER,
    Listener,
    Target,
    hostile_pickle,
    hostile_skops,
)
from tests.support.serve_helpers import serving
from tests.support.store import copy_example

pytestmark = pytest.mark.timeout(300)
SECRETS = {
    "GITHUB_TOKEN": f"ghs_{secrets.token_hex(12)}",
    "MLFLOW_TRACKING_PASSWORD": f"pw-{secrets.token_hex(10)}",
    "MLOPS_ADMIN_TOKEN": f"adm-{secrets.token_hex(10)}",
}
needs_bwrap = pytest.mark.skipif(
    probe().mechanism is None, reason=f"no sandbox here: {probe().why} (.ci/run installs it)"
)
NOT_ISOLATED = Isolation(None, "bwrap is not installed (Debian/Ubuntu package bubblewrap)")
IRIS = Path(__file__).resolve().parents[2] / "examples" / "iris" / "data"


@pytest.fixture
def listener() -> Iterator[Listener]:
    heard = Listener()
    yield heard
    heard.close()


class Runner:
    """The runner's command files (empty, in the test's folder), a marker path beside the
    test's folder and a descriptor the host holds open: what the payload must not touch."""

    def __init__(self, tmp_path: Path, listener: Listener) -> None:
        folder = tmp_path / "runner-files"
        folder.mkdir()
        self.files = {name: folder / name.lower() for name in COMMAND_FILES}
        for path in self.files.values():
            path.write_text("")
        self.marker = tmp_path.parent / f"planted-by-a-model-{secrets.token_hex(6)}"
        self.held = tmp_path / "held-open.txt"
        self.target = Target(listener.port, tuple(map(str, self.files.values())), str(self.marker))

    def env(self) -> dict[str, str]:
        return {**SECRETS, **{name: str(path) for name, path in self.files.items()}}

    def assert_untouched(self, written_by_mlops_ci: tuple[str, ...] = ()) -> None:
        """No command file has the payload's line (mlops-ci itself writes the step outputs
        and summary), none has a secret, and no marker was written beside the test's folder."""
        for name, path in self.files.items():
            text = path.read_text()
            assert APPENDED not in text, f"the model appended to {name}: {text!r}"
            assert not any(s in text for s in SECRETS.values()), f"a secret in {name}"
            if name not in written_by_mlops_ci:
                assert text == "", f"{name} changed: {text!r}"
        assert not self.marker.exists(), f"the model wrote {self.marker}"


@pytest.fixture
def runner_files(tmp_path: Path, listener: Listener) -> Iterator[Runner]:
    files = Runner(tmp_path, listener)
    yield files
    files.marker.unlink(missing_ok=True)  # a failed test must not leave it for the next


def iris() -> tuple[pd.DataFrame, pd.Series]:
    train = pd.read_csv(IRIS / "train.csv")
    return train.drop(columns=["species"]), train["species"]


def rows() -> pd.DataFrame:
    return pd.read_csv(IRIS / "test.csv").drop(columns=["species"]).head(5)


def assert_found_nothing(findings: list[dict[str, Any]], runner: Runner) -> None:
    """The payload ran (it reported) and found no secret, no variable naming a command file,
    no descriptor of the host's and wrote nothing."""
    assert findings, "the payload never reported: the test proves nothing"
    said = json.dumps(findings)
    leaked = [name for name, value in SECRETS.items() if value in said]
    assert not leaked, f"the model found {leaked}: {said[:3000]}"
    for found in findings:
        assert not found["own"], found["own"]  # no GITHUB_*, MLFLOW_*, MLOPS_* variable
        assert found["environ"] == {}, found["environ"]
        assert found["appended"] == [], found["appended"]
        assert not any(str(runner.held) in fd for fd in found["fds"]), found["fds"]
        # the host's processes (this test's, mlops-ci's) are not even visible
        assert not any("pytest" in c or "mlops_ci " in c for c in found["cmdlines"]), found
        assert found["ppid"] == 1, found  # bwrap, PID 1 of the sandbox's own namespace


# --- a pickle, through ModelRunner ----------------------------------------------------------


@needs_bwrap
def test_a_hostile_pickle_loaded_and_called_in_the_runner_finds_no_secret_and_changes_nothing(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    listener: Listener,
    runner_files: Runner,
) -> None:
    """At 86c9083 there is no mlops_ci.runner; the same file loaded as train loaded it then
    (``model.files.load_model_file``, joblib.load in mlops-ci's process) ran the payload here:
    ``own`` held the three secrets, ``fds`` the held file, and GITHUB_ENV was appended to."""
    for name, value in runner_files.env().items():
        monkeypatch.setenv(name, value)
    x, y = iris()
    model_file = hostile_pickle(
        tmp_path / "model.joblib", LogisticRegression(max_iter=1000).fit(x, y), runner_files.target
    )
    with runner_files.held.open("w") as held:  # a descriptor the host holds open
        os.set_inheritable(held.fileno(), True)
        with ModelRunner("auto") as runner:
            assert runner.isolation.mechanism == "bubblewrap"
            model = runner.load(model_file)
            predicted = model.predict(rows())
    assert list(predicted) == list(LogisticRegression(max_iter=1000).fit(x, y).predict(rows()))
    findings = listener.wait_for("load", "predict")
    assert {f["phase"] for f in findings} == {"load", "predict"}, findings
    assert_found_nothing(findings, runner_files)
    runner_files.assert_untouched()


HOST = """
import sys
from pathlib import Path

import pandas as pd

from mlops_ci.runner import ModelRunner

with ModelRunner(sys.argv[1]) as runner:
    model = runner.load(Path(sys.argv[2]))
    print(list(model.predict(pd.read_csv(sys.argv[3]).drop(columns=["species"]).head(3))))
"""


@pytest.mark.parametrize(
    "isolation", [pytest.param("auto", marks=needs_bwrap), pytest.param("off")]
)
def test_from_a_host_holding_the_secrets_the_payload_reaches_them_only_without_the_sandbox(
    tmp_path: Path, listener: Listener, runner_files: Runner, isolation: str
) -> None:
    """The host is a process started with the secrets in its environment, as a CI step is
    (a monkeypatched os.environ is not in this process's /proc/self/environ). Off, the plain
    child's environment is allow-listed but the parent's is one /proc read away: the payload
    finds the secrets and appends to GITHUB_ENV, the control that shows the payload works. In
    the sandbox it finds nothing. At 86c9083 the host script cannot import mlops_ci.runner;
    loading the file there in the host's process found the secrets in both modes."""
    x, y = iris()
    model_file = hostile_pickle(
        tmp_path / "model.joblib", LogisticRegression(max_iter=1000).fit(x, y), runner_files.target
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "MLFLOW_"))}
    done = subprocess.run(
        [sys.executable, "-c", HOST, isolation, str(model_file), str(IRIS / "test.csv")],
        env={**env, **runner_files.env()}, cwd=tmp_path, capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    findings = listener.wait_for("load", "predict")
    if isolation == "off":
        said = json.dumps(findings)
        assert all(value in said for value in SECRETS.values()), said[:3000]
        assert runner_files.files["GITHUB_ENV"].read_text() != ""
        return
    assert_found_nothing(findings, runner_files)
    runner_files.assert_untouched()


# --- a .skops file naming builtins.eval -----------------------------------------------------


@needs_bwrap
def test_a_skops_eval_pipeline_loads_only_in_the_sandbox_where_it_finds_no_secret(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    listener: Listener,
    runner_files: Runner,
) -> None:
    """At 86c9083 skops files were loaded with ``trusted=get_untrusted_types(file=path)`` in
    mlops-ci's process: the eval ran here, with the secrets in os.environ."""
    for name, value in runner_files.env().items():
        monkeypatch.setenv(name, value)
    x, y = iris()
    model_file = hostile_skops(tmp_path / "model.skops", x, y, runner_files.target)
    with ModelRunner("auto") as runner:
        model = runner.load(model_file)
        assert model.type_name == "sklearn.pipeline.Pipeline"
        assert len(model.predict(rows())) == 5
    findings = listener.wait_for("predict")
    assert_found_nothing(findings, runner_files)
    runner_files.assert_untouched()


def test_a_skops_eval_pipeline_is_refused_where_the_runner_is_not_isolated(
    tmp_path: Path, listener: Listener, runner_files: Runner
) -> None:
    """Not isolated (bwrap missing under train.isolation: auto), the types beyond the
    allow-list are refused by name before anything is built; ``off`` is the user's explicit
    trust and loads it. At 86c9083 it loaded everywhere (no InputError: the test fails)."""
    x, y = iris()
    model_file = hostile_skops(tmp_path / "model.skops", x, y, runner_files.target)
    with ModelRunner(NOT_ISOLATED) as runner, pytest.raises(InputError) as refused:
        runner.load(model_file)
    said = str(refused.value)
    assert "builtins.eval" in said and "functools.partial" in said, said
    assert "not on the allow-list" in said and refused.value.exit_code == 2
    assert "bubblewrap" in (refused.value.hint or "")
    assert listener.wait_for("predict", timeout=1) == []  # nothing of the file ran
    with ModelRunner("off") as runner:
        assert runner.unrestricted
        assert runner.load(model_file).type_name == "sklearn.pipeline.Pipeline"


@pytest.mark.parametrize(
    ("name", "allowed"),
    [
        ("sklearn.linear_model._logistic.LogisticRegression", True),
        ("sklearn.pipeline.Pipeline", True),
        ("numpy.ndarray", True),
        ("numpy.float64", True),
        ("numpy.add", True),  # a ufunc
        ("collections.OrderedDict", True),
        ("builtins.eval", False),
        ("builtins.exec", False),
        ("functools.partial", False),
        ("numpy.load", False),  # a function of numpy, not a class
        ("os.system", False),
        ("posix.system", False),
        ("sklearn.utils._testing.assert_allclose", False),
        ("sklearn", False),  # a module
        ("sklearn.no_such_module.Thing", False),
        ("sklearnx.Evil", False),
        ("builtins.Model", False),  # a class defined by value in a pickle
    ],
)
def test_the_allow_list_takes_framework_classes_and_ufuncs_only(name: str, allowed: bool) -> None:
    assert allowed_type(name) is allowed


# --- mlops-ci's verbs, end to end -----------------------------------------------------------


def write_project(tmp_path: Path, runner_files: Runner, kind: str, more: str = "") -> Path:
    """The iris example whose training command writes the hostile model file (made here, in
    the project as ``model.bin``): a pickle (outputs/model.joblib) or a skops eval pipeline
    (outputs/model.skops); package.onnx: auto, as the converter refuses both."""
    project = copy_example(tmp_path / "iris")
    x, y = iris()
    hostile = project / "model.bin"
    if kind == "pickle":
        fitted = LogisticRegression(max_iter=1000).fit(x, y)
        hostile_pickle(hostile, fitted, runner_files.target, more)
        output = "outputs/model.joblib"
    else:
        hostile_skops(hostile, x, y, runner_files.target)
        output = "outputs/model.skops"
    (project / "train.py").write_text(
        "import json, pathlib, shutil\n"
        "pathlib.Path('outputs').mkdir(exist_ok=True)\n"
        f"shutil.copyfile('model.bin', {output!r})\n"
        "pathlib.Path('outputs/metrics.json').write_text(json.dumps({'cv_accuracy': 0.95}))\n"
    )
    config = project / "mlops.yaml"
    text = config.read_text()
    text = text.replace("requirements.txt]", "requirements.txt, model.bin]", 1)
    text = text.replace("model: outputs/model.joblib", f"model: {output}", 1)
    text = re.sub(r"^  onnx: true$", "  onnx: auto", text, flags=re.M)
    config.write_text(text + "  profile: {single_row_runs: 10, batch_sizes: [1, 16]}\n")
    return project


def cli_env(runner_files: Runner, path: str | None = None) -> dict[str, str]:
    """A CI step's environment: the secrets, the runner's command files, GitHub Actions."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "MLFLOW_"))}
    env.pop("MLOPS_ADMIN_TOKEN", None)
    env = {**env, **runner_files.env(), "GITHUB_ACTIONS": "true"}
    if path is not None:
        env["PATH"] = path
    return env


def mlops_ci(env: dict[str, str], cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mlops_ci", *args], env=env, cwd=cwd, capture_output=True,
        text=True, timeout=240,
    )  # fmt: skip


def assert_no_secret_printed(output: str) -> None:
    """No line shows a secret but GitHub's own ::add-mask:: commands, which hide them."""
    for line in output.splitlines():
        if any(value in line for value in SECRETS.values()):
            assert line.startswith("::add-mask::"), line


def files_holding_a_secret(folder: Path) -> list[str]:
    """Every file under ``folder`` (records, MLflow's store and artifacts) holding a secret."""
    holding = []
    for path in [folder, *folder.rglob("*")]:
        if path.is_file() and not path.is_symlink():
            data = path.read_bytes()
            if any(value.encode() in data for value in SECRETS.values()):
                holding.append(str(path.relative_to(folder)) if path != folder else path.name)
    return holding


def forced_to_score(project: Path) -> None:
    """Evaluation data train did not score: compare loads the logged model to score it."""
    test = project / "data" / "test.csv"
    test.write_text("\n".join(test.read_text().splitlines()[:-1]) + "\n")


@needs_bwrap
@pytest.mark.slow
@pytest.mark.timeout(600)
@pytest.mark.parametrize("kind", ["pickle", "skops"])
def test_train_compare_package_serve_and_batch_score_of_a_hostile_model_leak_no_secret(
    tmp_path: Path, listener: Listener, runner_files: Runner, kind: str
) -> None:
    """`mlops-ci train`, `compare` (scoring the logged model again), `register`, `package`,
    `serve` of the package folder and `batch-score` with it, each a process holding the
    secrets as a CI step does: each loads the model (it reports), none lets it find a secret.

    At 86c9083 train's joblib.load / skops.io.load ran in mlops-ci's process (log_run): run
    against that checkout, the payload found all three secrets, appended to GITHUB_ENV and
    wrote the marker (train then exited 4), so this test fails there at train already; compare
    (registry.load_model), package (conversion, parity, the profiling child with the full
    environment) and serve loaded it in-process too."""
    project = write_project(tmp_path, runner_files, kind)
    env = cli_env(runner_files)
    outputs = []

    def verb(*args: str) -> str:
        reported = len(listener.findings)
        done = mlops_ci(env, tmp_path, *args, "-c", str(project))
        said = done.stdout + done.stderr
        assert done.returncode == 0, said
        assert len(listener.wait_for_more(reported)) > reported, f"{args[0]} loaded no model"
        outputs.append(said)
        return said

    assert "training command: isolated by bubblewrap" in verb("train")
    forced_to_score(project)
    verb("compare")
    record = json.loads((project / ".mlops" / "comparison.json").read_text())
    assert record["evaluation"]["scored"]["candidate"] == "now", record["evaluation"]
    registered = mlops_ci(env, tmp_path, "register", "-c", str(project), "--force")
    assert registered.returncode == 0, registered.stdout + registered.stderr
    outputs.append(registered.stdout + registered.stderr)
    verb("package", "--version", "@candidate", "--no-build")
    (context,) = (project / ".mlops" / "package").iterdir()
    verb(
        "batch-score", "--model-dir", str(context / "model"), "--input", str(IRIS / "test.csv"),
        "--output", str(tmp_path / "scored.csv"), "--processes", "1", "--isolation", "auto",
    )  # fmt: skip
    assert len(pd.read_csv(tmp_path / "scored.csv")) == len(pd.read_csv(IRIS / "test.csv"))
    reported = len(listener.findings)
    with serving(
        "--model-dir", str(context / "model"), "-c", str(project), "--isolation", "auto",
        cwd=tmp_path, env=env,
    ) as server:  # fmt: skip
        answer = httpx.post(
            f"{server.url}/score", json={"inputs": rows().to_numpy().tolist()}, timeout=60
        )
        assert answer.status_code == 200, answer.text
        assert len(answer.json()["predictions"]) == 5
        outputs.append(server.log())
    assert len(listener.wait_for_more(reported)) > reported, "serve loaded no model"
    findings = listener.findings
    assert_found_nothing(findings, runner_files)
    assert len({f["cwd"] for f in findings}) >= 5, "each verb's runner has a folder of its own"
    for output in outputs:
        assert_no_secret_printed(output)
    assert files_holding_a_secret(project) == []
    assert files_holding_a_secret(tmp_path / "scored.csv") == []
    runner_files.assert_untouched(written_by_mlops_ci=("GITHUB_OUTPUT", "GITHUB_STEP_SUMMARY"))


def test_mlops_ci_train_refuses_a_skops_eval_file_where_no_sandbox_works(
    tmp_path: Path, listener: Listener, runner_files: Runner
) -> None:
    """train.isolation: auto with no bwrap on PATH: the training command runs not isolated,
    and the model file it wrote names builtins.eval: exit 2 naming it (train.json too), and
    nothing of the file ran. At 86c9083 it loaded and scored (exit 0, the payload ran in
    mlops-ci's process)."""
    project = write_project(tmp_path, runner_files, "skops")
    tools = tmp_path / "bin"  # the interpreter's folder and git, no bwrap
    tools.mkdir()
    git = subprocess.run(["sh", "-c", "command -v git"], capture_output=True, text=True).stdout
    if git.strip():
        (tools / "git").symlink_to(git.strip())
    path = os.pathsep.join([str(Path(sys.executable).parent), str(tools)])
    done = mlops_ci(cli_env(runner_files, path=path), tmp_path, "train", "-c", str(project))
    said = done.stdout + done.stderr
    assert done.returncode == 2, said
    record = json.loads((project / ".mlops" / "train.json").read_text())
    assert record["status"] == "failed" and "builtins.eval" in record["error"], record
    assert re.search(r"error: .*model\.skops.*builtins\.eval.*functools\.partial", said), said
    assert listener.wait_for("predict", timeout=1) == []
    assert_no_secret_printed(said)
    runner_files.assert_untouched(written_by_mlops_ci=("GITHUB_OUTPUT", "GITHUB_STEP_SUMMARY"))


@needs_bwrap
@pytest.mark.slow
def test_a_link_in_the_mlflow_folder_the_child_saves_copies_nothing_of_mlops_ci(
    tmp_path: Path, listener: Listener, runner_files: Runner
) -> None:
    """The payload wraps MLflow's save_model in the child to put a link to
    /proc/self/environ in the folder it saves: followed by the parent, the link would be the
    parent's environment. The child sends the folder's regular files over the pipe and
    refuses a link (train exits 2 naming it). At 86c9083 the model was saved in mlops-ci's
    process and the payload read os.environ directly: it fails there too."""
    project = write_project(tmp_path, runner_files, "pickle", PLANT_LINK)
    env = cli_env(runner_files)
    trained = mlops_ci(env, tmp_path, "train", "-c", str(project))
    said = trained.stdout + trained.stderr
    assert trained.returncode == 2, said
    assert re.search(rf"error: .*{LINK_NAME}.*a link in a model folder", said), said
    findings = listener.wait_for("load")
    assert files_holding_a_secret(project) == []
    assert not any(f["files"].get(LINK_NAME) for f in findings), "the child read a copy"
    assert_found_nothing(findings, runner_files)


def test_an_answer_the_model_forges_on_the_runners_pipe_is_the_runners_error(
    tmp_path: Path, listener: Listener, runner_files: Runner
) -> None:
    """The model's predict writes a message of its own on every pipe it holds (the worker's
    answer pipe among them): the parent refuses it as the runner's failure. At 86c9083 there
    was no runner (ImportError)."""
    x, y = iris()
    fitted = LogisticRegression(max_iter=1000).fit(x, y)
    model_file = hostile_pickle(tmp_path / "model.joblib", fitted, runner_files.target, FORGE)
    with ModelRunner("auto") as runner:
        model = runner.load(model_file)
        with pytest.raises(MlopsError):
            model.predict(rows())


@needs_bwrap
@pytest.mark.slow
@pytest.mark.timeout(600)
def test_compare_scores_production_where_the_candidate_cannot_change_it(
    tmp_path: Path, listener: Listener, runner_files: Runner
) -> None:
    """A version of the honest example in production, then a candidate whose unpickling
    makes every plain LogisticRegression of its process predict one class: production's
    scores in the comparison are its own. At 86c9083 both were loaded in mlops-ci's process,
    where the same patch reached production too."""
    project = write_project(tmp_path, runner_files, "pickle", TAMPER)
    hostile_train = (project / "train.py").read_text()
    (project / "train.py").write_text((IRIS.parent / "train.py").read_text())
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "MLFLOW_"))}
    config = ("-c", str(project))
    for verb in (
        ["train"], ["compare"], ["register"],
        ["promote", "--version", "@candidate", "--reason", "the honest baseline"],
    ):  # fmt: skip
        done = mlops_ci(env, tmp_path, *verb, *config)
        assert done.returncode == 0, done.stdout + done.stderr
    (project / "train.py").write_text(hostile_train)
    trained = mlops_ci(env, tmp_path, "train", *config)
    assert trained.returncode == 0, trained.stdout + trained.stderr
    forced_to_score(project)
    compared = mlops_ci(env, tmp_path, "compare", *config)
    assert compared.returncode in (0, 1), compared.stdout + compared.stderr
    record = json.loads((project / ".mlops" / "comparison.json").read_text())
    assert record["evaluation"]["scored"] == {"candidate": "now", "production": "now"}
    test = pd.read_csv(project / "data" / "test.csv")
    x, y = iris()
    honest = LogisticRegression(C=1.0, max_iter=1000).fit(x, y)
    accuracy = float((honest.predict(test.drop(columns=["species"])) == test["species"]).mean())
    assert record["production"]["metrics"]["accuracy"] == pytest.approx(accuracy)
