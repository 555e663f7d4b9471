"""The tensor-input examples (issue 43), on their own before mlops-ci takes them through its
steps: examples/digits (an image, ``pixels`` [rows, 1, 8, 8] float) and examples/text
(``input_ids`` and ``attention_mask`` [rows, 12] int64). Each is copied, its data rewritten by
its prepare_data.py (the committed files, byte for byte) and trained twice by its train.py
(the same model bytes); onnxruntime then reads the model's inputs and scores data/test.npz."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@dataclass(frozen=True)
class Example:
    name: str
    inputs: dict[str, tuple[str, list[str | int]]]  # name: (onnxruntime's type, shape)
    classes: int
    metadata: dict[str, str]  # the arrays to slice by: their dtype
    label: str  # the target's dtype
    accuracy: float  # at least, on data/test.npz


CASES = [
    Example(
        "digits",
        {"pixels": ("tensor(float)", ["rows", 1, 8, 8])},
        classes=10,
        metadata={"ink": "<U6"},
        label="int64",
        accuracy=0.9,
    ),
    Example(
        "text",
        {
            "input_ids": ("tensor(int64)", ["rows", 12]),
            "attention_mask": ("tensor(int64)", ["rows", 12]),
        },
        classes=3,
        metadata={"length": "<U5"},
        label="<U7",
        accuracy=0.9,
    ),
]


def run(project: Path, script: str) -> None:
    subprocess.run([sys.executable, script], cwd=project, check=True, timeout=240)


def trained(project: Path) -> bytes:
    shutil.rmtree(project / "outputs", ignore_errors=True)
    run(project, "train.py")
    return (project / "outputs" / "model.onnx").read_bytes()


@pytest.mark.parametrize("example", CASES, ids=lambda e: e.name)
def test_the_example_prepares_its_data_and_trains_a_tensor_model(
    example: Example, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MLOPS_PARAMS", raising=False)  # the scripts' defaults
    committed = EXAMPLES / example.name
    project = tmp_path / example.name
    shutil.copytree(
        committed, project, ignore=shutil.ignore_patterns("outputs", "__pycache__", ".mlops")
    )
    for name in ("train.npz", "test.npz"):
        (project / "data" / name).unlink()
    run(project, "prepare_data.py")
    for name in ("train.npz", "test.npz"):
        data = project / "data" / name
        assert data.read_bytes() == (committed / "data" / name).read_bytes(), name
        with zipfile.ZipFile(data) as archive:  # np.savez: stored, so mlops-ci maps it in place
            assert {i.compress_type for i in archive.infolist()} == {zipfile.ZIP_STORED}
    assert sum(p.stat().st_size for p in (committed / "data").glob("*.npz")) < 1_000_000

    first = trained(project)
    assert trained(project) == first  # seeded, one BLAS thread: the same bytes
    metrics = json.loads((project / "outputs" / "metrics.json").read_text())
    assert 0.0 <= metrics["cv_accuracy"] <= 1.0

    session = ort.InferenceSession(first, providers=["CPUExecutionProvider"])
    assert {i.name: (i.type, i.shape) for i in session.get_inputs()} == example.inputs
    assert [(o.name, o.type, o.shape) for o in session.get_outputs()] == [
        ("probs", "tensor(float)", ["rows", example.classes])
    ]
    classes = np.array(json.loads(session.get_modelmeta().custom_metadata_map["classes"]))
    assert len(classes) == example.classes

    with np.load(project / "data" / "test.npz", allow_pickle=False) as test:
        arrays = dict(test)
    assert set(arrays) == {*example.inputs, "label", *example.metadata}
    assert arrays["label"].dtype == np.dtype(example.label)
    rows = len(arrays["label"])
    for name, dtype in example.metadata.items():
        assert (arrays[name].dtype, arrays[name].shape) == (np.dtype(dtype), (rows,))
    feeds = {name: arrays[name] for name in example.inputs}
    for name, (kind, shape) in example.inputs.items():
        assert feeds[name].dtype == np.dtype("float32" if kind == "tensor(float)" else "int64")
        assert list(feeds[name].shape) == [rows, *shape[1:]]

    (probs,) = session.run(["probs"], feeds)
    assert probs.shape == (rows, example.classes)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    predicted = classes[probs.argmax(axis=1)]
    assert set(np.unique(arrays["label"])) <= set(classes)
    accuracy = float((predicted == arrays["label"]).mean())
    assert accuracy >= example.accuracy, accuracy

    if "attention_mask" in feeds:  # the padding's ids count for nothing
        other = np.where(feeds["attention_mask"] == 0, 63, feeds["input_ids"])
        (again,) = session.run(["probs"], {**feeds, "input_ids": other})
        np.testing.assert_allclose(again, probs, rtol=1e-6, atol=1e-7)
