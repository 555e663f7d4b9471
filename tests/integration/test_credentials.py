"""No credential in any output (issue 38): mlops-ci against a real `mlflow server` with
MLflow's own authentication, the tracking URI carrying a user's password. Neither what the CLI
prints (its lines, MLflow's own, the CI annotations, the --debug traceback) nor what it records
under .mlops/ holds the password, on success and on every kind of failure."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest

from tests.support.mlflow_server import Fault, create_user, fault_proxy, mlflow_server
from tests.support.store import copy_example

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

# Random per run, so no file or log can hold them by chance; the '@' of the user's password is
# percent-encoded in the URI, so both of its spellings are looked for.
SECRET = secrets.token_hex(8)
ADMIN = ("admin", f"Adm1n-{secrets.token_hex(8)}")
USER = ("alice", f"Al1ce@{SECRET}")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with mlflow_server(tmp_path_factory.mktemp("auth-server"), admin=ADMIN) as url:
        create_user(url, ADMIN, USER)
        yield url


def with_password(url: str, password: str = USER[1]) -> str:
    """``http://alice:PASSWORD@host:port``, the password percent-encoded as a URI needs."""
    return url.replace("http://", f"http://{USER[0]}:{quote(password, safe='')}@")


def cli(project: Path, uri: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """`mlops-ci ARGS` in a process of its own, as a CI job runs it: MLFLOW_TRACKING_URI only
    from ``uri``, no CI platform unless ``env`` says so."""
    clean = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("MLFLOW_", "GITHUB_", "TF_BUILD", "SYSTEM_"))
    }
    return subprocess.run(
        [sys.executable, "-m", "mlops_ci", *args, "-c", str(project)],
        capture_output=True,
        text=True,
        timeout=240,
        env={**clean, "MLFLOW_TRACKING_URI": uri, **env},
    )


def shown(done: subprocess.CompletedProcess[str]) -> str:
    return f"exit {done.returncode}\n--- stdout\n{done.stdout}\n--- stderr\n{done.stderr}"


def recorded_with(project: Path, secret: str) -> list[str]:
    """The files under the project's .mlops/ that hold ``secret``."""
    return [
        str(path.relative_to(project))
        for path in (project / ".mlops").rglob("*")
        if path.is_file() and secret.encode() in path.read_bytes()
    ]


def test_train_with_a_password_in_the_tracking_uri_shows_and_records_none(
    server: str, tmp_path: Path
) -> None:
    """MLflow itself prints "View run … at: URI" when a run ends, the URI as it was given."""
    project = copy_example(tmp_path / "iris")
    done = cli(project, with_password(server), "train")
    assert done.returncode == 0, shown(done)
    assert "logged run " in done.stdout, shown(done)
    assert SECRET not in done.stdout + done.stderr, shown(done)
    assert recorded_with(project, SECRET) == []


def test_failures_print_no_password(server: str, tmp_path: Path) -> None:
    """No such run (exit 2 or 3), the password refused (exit 3) and an error MLflow raised that
    mlops-ci did not expect (MLflow's message quotes the URI), with the --debug traceback and a
    CI annotation: the server's address is named, the password nowhere."""
    project = copy_example(tmp_path / "iris")
    missing = cli(project, with_password(server), "compare", "--run", "nonexistent")
    # 2, no such run; but MLflow's basic-auth answers 403 to a run it cannot find (whose
    # experiment it cannot tell), which is 3.
    assert missing.returncode in (2, 3), shown(missing)
    wrong = f"Wr0ng-{SECRET}"
    refused = cli(
        project, with_password(server, wrong), "--debug", "versions", GITHUB_ACTIONS="true"
    )
    assert refused.returncode == 3 and "401" in refused.stderr, shown(refused)
    assert "::error title=mlops-ci::MLflow at http://***@" in refused.stdout, shown(refused)
    assert "Traceback" in refused.stderr, shown(refused)
    with fault_proxy(server) as (proxy, state):
        # The server answers 503 to every attempt to create the run (one attempt: no retries).
        state.faults.append(Fault("POST", r"/runs/create$", "503", times=1000))
        failed = cli(
            project,
            with_password(proxy),
            "--debug",
            "train",
            "--no-cache",
            MLFLOW_HTTP_REQUEST_MAX_RETRIES="0",
        )
    # 4 while log_run lets MLflow's exception through unmapped; 3 once it maps it.
    assert failed.returncode in (3, 4) and "Traceback" in failed.stderr, shown(failed)
    for done in (missing, refused, failed):
        assert SECRET not in done.stdout + done.stderr, shown(done)
        assert "http://***@127.0.0.1:" in done.stderr, shown(done)
    assert recorded_with(project, SECRET) == []
