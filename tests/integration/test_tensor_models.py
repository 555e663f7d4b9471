"""A model that takes tensors (issue 43): a 2-input text classifier (token ids and attention
mask) with its evaluation data in an .npz, through validate, train, compare (recorded
predictions, then both models scored anew: production loaded from MLflow's registry) and
register, every metric held against onnxruntime called directly on the same arrays. Then package
(its own graph with mlops-ci's outputs, parity exact) and serve: /score, v2 JSON and v2
binary answer what onnxruntime answers on the same arrays; a wrong shape is a 422 naming
the input."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pandas as pd
import pytest
from sklearn.metrics import accuracy_score, f1_score

from tests.support.helpers import run_cli
from tests.support.serve_helpers import serving
from tests.support.tensor_models import CLASSES, text_graph, text_rows

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

CONFIG = """\
version: 1
model: {name: text-tensors, flavor: onnx, task: classification}
train:
  command: "{python} train.py"
  inputs: [train.py, exported.onnx]
  outputs: {model: outputs/model.onnx, metrics: outputs/metrics.json}
evaluate:
  data: data/test.npz
  target: label
  metrics: [f1_macro, accuracy]
  slices: [length]
gate:
  rules:
    - {metric: f1_macro, must: not_worse_than_production, tolerance: 0.005}
    - {metric: accuracy, min: 0.5}
registry:
  tracking_uri: "sqlite:///.mlops/mlflow.db"
"""
# What a PyTorch script does after torch.onnx.export: here the export is already made.
TRAIN = """\
import json, shutil
from pathlib import Path
Path("outputs").mkdir(exist_ok=True)
shutil.copy("exported.onnx", "outputs/model.onnx")
Path("outputs/metrics.json").write_text(json.dumps({"held_out_accuracy": 0.9}))
"""


def direct_labels(arrays: dict[str, np.ndarray]) -> np.ndarray:
    """onnxruntime called directly: the answers every path is held to."""
    session = ort.InferenceSession(text_graph(), providers=["CPUExecutionProvider"])
    feeds = {n: arrays[n] for n in ("input_ids", "attention_mask")}
    return np.asarray(CLASSES)[session.run(None, feeds)[0].argmax(axis=1)]


def write_data(project: Path, rows: int, seed: int) -> dict[str, np.ndarray]:
    arrays: dict[str, np.ndarray] = dict(text_rows(rows, seed))
    label = direct_labels(arrays)
    label[::7] = "sports"  # the model is not always right
    arrays["label"] = label
    arrays["length"] = np.where(arrays["attention_mask"].sum(axis=1) > 4, "long", "short")
    np.savez(project / "data" / "test.npz", **arrays)
    return arrays


def expected(arrays: dict[str, np.ndarray]) -> dict[str, float]:
    got = direct_labels(arrays)
    return {
        "accuracy": accuracy_score(arrays["label"], got),
        "f1_macro": f1_score(arrays["label"], got, average="macro"),
    }


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    root = tmp_path / "text"
    (root / "data").mkdir(parents=True)
    (root / "mlops.yaml").write_text(CONFIG)
    (root / "train.py").write_text(TRAIN)
    (root / "exported.onnx").write_bytes(text_graph())
    return root


def comparison(project: Path) -> dict:
    return json.loads((project / ".mlops" / "comparison.json").read_text())


def test_a_text_model_trains_compares_and_registers_like_onnxruntime_answers(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    arrays = write_data(project, 240, seed=5)
    assert run_cli("validate", "-c", str(project)) == 0
    assert run_cli("train", "-c", str(project)) == 0
    assert run_cli("compare", "-c", str(project)) == 0
    found = comparison(project)
    assert found["verdict"] == "no-baseline"
    want = expected(arrays)
    for metric, value in want.items():
        assert found["candidate"]["metrics"][metric] == pytest.approx(value, abs=1e-12)
    assert run_cli("register", "-c", str(project)) == 0
    promote = ("--version", "@candidate", "--reason", "first", "--by", "t")
    assert run_cli("promote", "-c", str(project), *promote) == 0
    assert run_cli("train", "-c", str(project), "--no-cache") == 0
    # new rows: neither run's recorded predictions apply, both models are scored here
    arrays = write_data(project, 180, seed=9)
    capsys.readouterr()
    assert run_cli("compare", "-c", str(project)) == 0
    assert "as train recorded them" not in capsys.readouterr().out
    found = comparison(project)
    assert found["verdict"] == "pass"
    for role in ("candidate", "production"):
        for metric, value in expected(arrays).items():
            assert found[role]["metrics"][metric] == pytest.approx(value, abs=1e-12), role
    slices = {(s["column"], s["value"]): s for s in found["slices"]}
    assert set(slices) == {("length", "long"), ("length", "short")}
    for (_, value), cut in slices.items():
        rows = {k: v[arrays["length"] == value] for k, v in arrays.items()}
        assert cut["rows"] == len(rows["label"])
        assert cut["candidate"]["accuracy"] == pytest.approx(expected(rows)["accuracy"])


def test_data_that_does_not_fit_the_model_is_one_line_exit_2(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_data(project, 60, seed=5)
    assert run_cli("train", "-c", str(project)) == 0
    arrays = dict(np.load(project / "data" / "test.npz"))
    narrow = arrays["attention_mask"][:, :5]
    np.savez(project / "data" / "test.npz", **(arrays | {"attention_mask": narrow}))
    capsys.readouterr()
    assert run_cli("compare", "-c", str(project)) == 2
    err = capsys.readouterr().err
    assert "data/test.npz: input 'attention_mask': shape [60, 5] does not fit" in err
    assert "Traceback" not in err
    beyond = np.full_like(arrays["input_ids"], 64)  # past the vocabulary
    np.savez(project / "data" / "test.npz", **(arrays | {"input_ids": beyond}))
    assert run_cli("compare", "-c", str(project)) == 2
    err = capsys.readouterr().err
    assert "data/test.npz: the candidate " in err and "onnxruntime refused the values" in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    write_data(project, 60, seed=5)
    assert run_cli("compare", "-c", str(project)) == 0


def post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, dict]:
    request = urllib.request.Request(url, data=body, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def test_a_packaged_text_model_serves_v2_json_binary_and_score_like_onnxruntime(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    arrays = write_data(project, 120, seed=5)
    for verb in ("train", "compare", "register"):
        assert run_cli(verb, "-c", str(project)) == 0
    capsys.readouterr()
    assert run_cli("package", "-c", str(project), "--version", "@candidate", "--no-build") == 0
    out = capsys.readouterr().out
    assert "parity: max |native - onnx| 0.00e+00 on 120 rows" in out
    assert "on CPUExecutionProvider" in out
    context = project / ".mlops" / "package" / "text-tensors-1"
    manifest = json.loads((context / "model" / "manifest.json").read_text())
    assert manifest["layout"] == "tensors"
    assert [t["name"] for t in manifest["tensors"]] == ["input_ids", "attention_mask"]
    ids, mask = arrays["input_ids"][:9], arrays["attention_mask"][:9]
    session = ort.InferenceSession(text_graph(), providers=["CPUExecutionProvider"])
    (probs,) = session.run(None, {"input_ids": ids, "attention_mask": mask})
    labels = np.asarray(CLASSES)[probs.argmax(axis=1)].tolist()
    as_json = {"content-type": "application/json"}
    with serving("--model-dir", str(context), cwd=project) as server:
        score = {"inputs": {"input_ids": ids.tolist(), "attention_mask": mask.tolist()}}
        code, said = post(f"{server.url}/score", json.dumps(score).encode(), as_json)
        assert code == 200 and said["predictions"] == labels
        assert np.array_equal(np.asarray(said["probabilities"], np.float32), probs)
        tensors = [
            {"name": n, "shape": list(a.shape), "datatype": "INT64", "data": a.ravel().tolist()}
            for n, a in (("input_ids", ids), ("attention_mask", mask))
        ]
        infer = f"{server.url}/v2/models/text-tensors/infer"
        code, said = post(infer, json.dumps({"inputs": tensors}).encode(), as_json)
        assert code == 200, said
        assert said["outputs"][0]["data"] == labels
        got = np.asarray(said["outputs"][1]["data"], np.float32).reshape(probs.shape)
        assert np.array_equal(got, probs)
        header = json.dumps(
            {
                "inputs": [
                    {k: v for k, v in t.items() if k != "data"}
                    | {"parameters": {"binary_data_size": 9 * 6 * 8}}
                    for t in tensors
                ]
            }
        ).encode()
        body = header + ids.astype("<i8").tobytes() + mask.astype("<i8").tobytes()
        binary = {"content-type": "application/octet-stream"}
        binary["inference-header-content-length"] = str(len(header))
        code, said = post(infer, body, binary)
        assert code == 200 and said["outputs"][0]["data"] == labels
        beyond = {"inputs": {"input_ids": [[64] * 6], "attention_mask": [[1] * 6]}}
        code, said = post(f"{server.url}/score", json.dumps(beyond).encode(), as_json)
        assert code == 422 and said["error"].startswith("the model cannot score these values")
        score["inputs"]["attention_mask"] = mask[:, :5].tolist()
        code, said = post(f"{server.url}/score", json.dumps(score).encode(), as_json)
        assert code == 422
        assert said["error"].startswith("input 'attention_mask': shape [9, 5] does not fit")
        with urllib.request.urlopen(f"{server.url}/v2/models/text-tensors", timeout=10) as r:
            inputs = json.loads(r.read())["inputs"]
        assert inputs == [
            {"name": "input_ids", "datatype": "INT64", "shape": [-1, 6]},
            {"name": "attention_mask", "datatype": "INT64", "shape": [-1, 6]},
        ]
    # not built for tensors yet: one line, exit 2 (no internal error)
    table = project / "rows.parquet"
    pd.DataFrame({"input_ids": [[1] * 6], "attention_mask": [[1] * 6]}).to_parquet(table)
    capsys.readouterr()
    args = ("--model-dir", str(context), "--input", str(table), "--output", str(project / "o"))
    assert run_cli("batch-score", *args) == 2
    assert "takes tensors (input_ids [-1, 6] int64" in capsys.readouterr().err
