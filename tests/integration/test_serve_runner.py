"""A native model in `serve` and `batch-score` is loaded and called only in the model runner's
child: a pickle that reads every ``/proc/*/environ`` it can when it is loaded finds none of the
secrets `mlops-ci` holds (it reports what it found as its predictions), but where isolation is
off (the positive control: the parent's environment is one read away). A value the model
refuses is a 422; a version's runner stops when the version is unloaded or the server stops."""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import joblib
import numpy as np
import pandas as pd
import pytest

from mlops_ci.model.integrity import MANIFEST, digest, file_manifest
from mlops_ci.sandbox import probe
from tests.support.serve_helpers import ADMIN_TOKEN, serving

pytestmark = pytest.mark.slow

# What a pull request's model file may run: it scans every process's environment for the
# secrets and answers with the pids where it found one (a DummyClassifier's constant label).
PAYLOAD = """
import json, pathlib
import numpy as np
from sklearn.dummy import DummyClassifier
found = []
for proc in pathlib.Path("/proc").iterdir():
    if proc.name.isdigit():
        try:
            data = (proc / "environ").read_bytes()
        except OSError:
            continue
        if any(s.encode() in data for s in SECRETS):
            found.append(proc.name)
said = json.dumps(sorted(found))
model = DummyClassifier(strategy="constant", constant=said).fit(np.zeros((2, 2)), [said, "-"])
"""


class Payload:
    """Unpickled, it runs PAYLOAD and becomes the fitted model it built."""

    def __init__(self, secret_values: list[str]) -> None:
        self.secret_values = secret_values

    def __reduce__(self) -> tuple[Any, ...]:
        scope = {"CODE": PAYLOAD, "G": {"SECRETS": self.secret_values}}
        return (eval, ("[exec(CODE, G), G['model']][1]", scope))


def package_folder(
    folder: Path, model: Any, schema: list[dict[str, str]], version: str = "1", skops: bool = False
) -> Path:
    """A package folder as `package` writes one for a native model: its file and manifest."""
    folder.mkdir(parents=True)
    if skops:
        import skops.io

        skops.io.dump(model, folder / "model.skops")
    else:
        joblib.dump(model, folder / "model.pkl")
    files = file_manifest(folder)
    manifest = {
        "name": "native",
        "version": version,
        "format": "sklearn",
        "features": [f["name"] for f in schema],
        "schema": schema,
        "files": files,
        "sha256": digest(files),
    }
    (folder / MANIFEST).write_text(json.dumps(manifest))
    return folder


NUMBERS = [{"name": "x0", "kind": "number"}, {"name": "x1", "kind": "number"}]


@pytest.fixture
def secret_env() -> dict[str, str]:
    return {
        "GITHUB_TOKEN": "ghp_" + secrets.token_hex(12),
        "MLFLOW_TRACKING_PASSWORD": "pw-" + secrets.token_hex(12),
        "MLOPS_ADMIN_TOKEN": "admin-" + secrets.token_hex(12),  # not the other tests' token
    }


def planted(tmp_path: Path, secret_env: dict[str, str]) -> Path:
    return package_folder(tmp_path / "payload", Payload(list(secret_env.values())), NUMBERS)


def found_by(answer: httpx.Response) -> list[str]:
    assert answer.status_code == 200, answer.text
    (label,) = answer.json()["predictions"]
    return list(json.loads(label))


def children(pid: int) -> set[int]:
    out = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.add(int(stat.parent.name))
    return out


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_serve_loads_a_planted_pickle_only_where_it_finds_no_secret(
    tmp_path: Path, secret_env: dict[str, str]
) -> None:
    folder = planted(tmp_path, secret_env)
    row = {"inputs": [{"x0": 1.0, "x1": 2.0}]}
    mode = "required" if probe().mechanism else "auto"
    with serving(
        "--model-dir", str(folder), "--isolation", mode, cwd=tmp_path, env=secret_env
    ) as srv:
        assert found_by(httpx.post(f"{srv.url}/score", json=row)) == []
        assert f"native model runner: {probe().line}" in srv.log()
    if probe().mechanism is None:
        return  # a plain child reads its parent's environment: the control below says so
    with serving(
        "--model-dir", str(folder), "--isolation", "off", cwd=tmp_path, env=secret_env
    ) as srv:
        assert found_by(httpx.post(f"{srv.url}/score", json=row)) == [str(srv.process.pid)]
        assert "native model runner: not isolated: train.isolation is off" in srv.log()


def test_a_value_the_model_refuses_is_a_422_and_a_version_runner_stops_with_it(
    tmp_path: Path,
) -> None:
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder

    frame = pd.DataFrame({"color": ["red", "blue", "red", "green"], "size": [1.0, 2.0, 3.0, 4.0]})
    pipeline = Pipeline(
        [
            (
                "encode",
                ColumnTransformer([("c", OneHotEncoder(), ["color"])], remainder="passthrough"),
            ),
            ("model", LogisticRegression()),
        ]
    ).fit(frame, [0, 1, 0, 1])
    schema = [{"name": "color", "kind": "string"}, {"name": "size", "kind": "number"}]
    v1 = package_folder(tmp_path / "v1", pipeline, schema, "1", skops=True)
    v2 = package_folder(tmp_path / "v2", pipeline, schema, "2", skops=True)
    with serving("--model-dir", f"{v1}=1", "--model-dir", f"{v2}=0", cwd=tmp_path) as srv:
        good = httpx.post(f"{srv.url}/score", json={"inputs": [{"color": "red", "size": 1.5}]})
        assert good.status_code == 200, good.text
        assert good.json()["predictions"] == [0]
        unseen = httpx.post(f"{srv.url}/score", json={"inputs": [{"color": "mauve", "size": 1}]})
        assert unseen.status_code == 422, unseen.text
        assert unseen.json()["error"].startswith("the model cannot score these values: Found")
        runners = children(srv.process.pid)
        assert len(runners) == 2, runners  # one per native version
        gone = httpx.delete(
            f"{srv.url}/admin/models/2", headers={"authorization": f"Bearer {ADMIN_TOKEN}"}
        )
        assert gone.status_code == 200, gone.text
        left = children(srv.process.pid)
        assert len(left) == 1 and left < runners
        again = httpx.post(f"{srv.url}/score", json={"inputs": [{"color": "blue", "size": 2}]})
        assert again.status_code == 200, again.text
        assert srv.stop() in (0, -signal.SIGTERM)  # uvicorn re-raises the signal it handled
    assert not any(alive(pid) for pid in runners)
    assert "Traceback" not in srv.log()


def test_batch_score_loads_a_planted_pickle_only_in_its_runners(
    tmp_path: Path, secret_env: dict[str, str]
) -> None:
    folder = planted(tmp_path, secret_env)
    rows = pd.DataFrame({"id": range(40), "x0": np.arange(40.0), "x1": 1.0})
    rows.to_csv(tmp_path / "rows.csv", index=False)
    env = {**os.environ, **secret_env}
    env.pop("MLFLOW_TRACKING_URI", None)

    def batch(*args: str) -> pd.DataFrame:
        out = tmp_path / f"scored-{len(list(tmp_path.glob('scored-*')))}.parquet"
        run = subprocess.run(
            [sys.executable, "-m", "mlops_ci", "batch-score", "--model-dir", str(folder),
             "--input", str(tmp_path / "rows.csv"), "--output", str(out), "--chunk-rows", "10",
             *args],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert run.returncode == 0, run.stdout + run.stderr
        assert "native model runner: " in run.stdout
        return pd.read_parquet(out)

    scored = batch("--processes", "2")
    assert len(scored) == 40 and set(scored["prediction"]) == {"[]"}
    if probe().mechanism is not None:  # the control: a plain child finds its parent's
        control = batch("--processes", "1", "--isolation", "off")
        assert set(control["prediction"]) != {"[]"}
