"""The MLflow registry adapter without a server: the environment left as it was, an alias
race retried, its server named without credentials, a bad tracking URI is bad input."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlops_ci.registry.mlflow import MlflowRegistry


def test_opening_a_registry_leaves_the_environment_as_it_was(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """MLflow writes MLFLOW_TRACKING_URI into os.environ; a second project opened in the same
    process must not take the first one's registry for the user's setting."""
    import os

    from mlops_ci.registry.mlflow import MlflowRegistry

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    MlflowRegistry(f"sqlite:///{tmp_path / 'a.db'}", str(tmp_path / "artifacts"))
    assert "MLFLOW_TRACKING_URI" not in os.environ
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://team:5000")
    MlflowRegistry(f"sqlite:///{tmp_path / 'b.db'}", str(tmp_path / "artifacts"))
    assert os.environ["MLFLOW_TRACKING_URI"] == "http://team:5000"


@pytest.mark.parametrize(
    ("failures", "message", "calls", "fails"),
    [
        (1, "BAD_REQUEST: (sqlite3.IntegrityError) UNIQUE constraint failed: ...alias", 2, False),
        (9, "duplicate key value violates unique constraint", 5, True),
        (1, "RESOURCE_DOES_NOT_EXIST: version 7", 1, True),
    ],
)
def test_an_alias_write_that_lost_a_race_is_retried_and_nothing_else(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    failures: int,
    message: str,
    calls: int,
    fails: bool,
) -> None:
    """Two registers setting the same alias at once collide on its unique key in MLflow's SQL
    store; the loser retries. Any other error is reported at once."""
    from mlflow.exceptions import MlflowException

    from mlops_ci.errors import ServiceError
    from mlops_ci.registry import mlflow as adapter

    monkeypatch.setattr(adapter.time, "sleep", lambda _s: None)
    reg = adapter.MlflowRegistry(f"sqlite:///{tmp_path / 'a.db'}", str(tmp_path / "artifacts"))
    seen: list[tuple[str, str, str]] = []

    def set_alias(name: str, alias: str, version: str) -> None:
        seen.append((name, alias, version))
        if len(seen) <= failures:
            raise MlflowException(message)

    monkeypatch.setattr(reg.client, "set_registered_model_alias", set_alias)
    if fails:
        with pytest.raises(ServiceError, match=message.split(":")[0]):
            reg.set_alias("m", "candidate", "3")
    else:
        reg.set_alias("m", "candidate", "3")
    assert seen == [("m", "candidate", "3")] * calls


@pytest.mark.timeout(60)
def test_the_registry_names_its_server_without_credentials(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A real MLflow client against a closed port: the one-line error names the server
    without the password (which holds an '@') or the query token."""
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    registry = MlflowRegistry("http://alice:p@ssSECRET@127.0.0.1:9/?token=QSECRET", "/tmp/a")
    assert registry.describe() == "http://***@127.0.0.1:9/?token=***"
    from mlops_ci.errors import ServiceError

    with pytest.raises(ServiceError) as caught:
        registry.find_cached_run("exp", "key")
    assert "SECRET" not in str(caught.value) and "127.0.0.1:9" in str(caught.value)


@pytest.mark.timeout(60)
def test_an_undefined_azure_macro_is_unset_and_a_bad_uri_is_bad_input(
    project: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The Azure templates pass `MLFLOW_TRACKING_URI: $(MLFLOW_TRACKING_URI)`; a pipeline that
    never defined the variable hands over that text, which means "use mlops.yaml's". A value
    MLflow cannot open is the user's error (exit 2, naming the variable), not an internal one."""
    from mlops_ci.config.types import load_config
    from tests.support.helpers import run_cli

    config = load_config(project)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "$(MLFLOW_TRACKING_URI)")
    registry = MlflowRegistry.for_config(config)
    assert registry.uri == f"sqlite:///{project / '.mlops' / 'mlflow.db'}"

    monkeypatch.setenv("MLFLOW_TRACKING_URI", "mlruns")
    assert run_cli("status", "-c", str(project)) == 2
    err = capsys.readouterr().err
    assert "MLFLOW_TRACKING_URI: 'mlruns': not a tracking URI (sqlite:///PATH" in err
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "bogus://alice:pSECRET@host/")
    assert run_cli("status", "-c", str(project)) == 2
    err = capsys.readouterr().err
    assert "MLFLOW_TRACKING_URI: 'bogus://***@host/'" in err and "SECRET" not in err
    assert len(err.strip().splitlines()) == 1, err


def test_each_registry_reads_its_own_artifacts_when_two_are_open(tmp_path: Path) -> None:
    """MLflow keeps one global tracking URI: the registry opened last sets it, so a read by URI
    alone would look for the first registry's run in the second one's store."""
    from tests.support.store import seed_store

    for db in ("a.db", "b.db"):
        seed_store(tmp_path / db)
    first = MlflowRegistry(f"sqlite:///{tmp_path / 'a.db'}", str(tmp_path / "a-artifacts"))
    run = first.client.create_run(first.client.create_experiment("e")).info.run_id
    (tmp_path / "note").mkdir()
    (tmp_path / "note" / "text.txt").write_text("first's")
    first.log_artifacts(run, tmp_path / "note", "notes")
    MlflowRegistry(f"sqlite:///{tmp_path / 'b.db'}", str(tmp_path / "b-artifacts"))

    assert first.read_artifact_text(run, "notes/text.txt") == "first's"
    assert first.read_artifact_text(run, "notes/absent.txt") is None
    got = first.download_model(f"runs:/{run}/notes", tmp_path / "got")
    assert (Path(got) / "text.txt").read_text() == "first's"
