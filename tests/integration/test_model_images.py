"""The serving image of a model that is neither ONNX nor scikit-learn's own, on the real engine
(podman's Docker API here; `.ci/run` starts it with shared/tools/container-engine.sh): an MLflow
pyfunc folder whose PythonModel lives in a module of its own (``code_paths``) and loads a
statsmodels Logit from its artifacts (``model.flavor: pyfunc``). The project is
test_any_python_model's (its data, with column names such as ``x 2`` and ``größe``); it is
trained, registered and packaged with its image built from the context alone (requirements.txt
pins what the model needs, from the training lock), and the container, once ready, answers
/score and v2 infer as the model itself answers, loaded here. Skipped, with the reason, where
no engine answers.

A CatBoost model's image ran here too until CI's time ran short: a cold build of most of a
gigabyte of wheels (CatBoost brings matplotlib and plotly), 147 s in a clean-clone .ci/run
here; what it held beyond this one, that requirements.txt pins ``catboost``,
test_any_python_model checks without an engine. `pytest -s` prints how long training,
packaging, the build and readiness took."""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from mlops_ci.config.types import load_config
from mlops_ci.packaging import image
from mlops_ci.registry.mlflow import MlflowRegistry
from mlops_ci.steps.compare import compare
from mlops_ci.steps.package import package
from mlops_ci.steps.register import register
from mlops_ci.steps.train import train
from tests.integration.test_any_python_model import (
    Case,
    project,
    reference,
    requirements,
    served_answers,
)
from tests.integration.test_conformance import gap
from tests.integration.test_container import running

pytestmark = [pytest.mark.slow, pytest.mark.docker, pytest.mark.timeout(900)]

MODELS = {
    "pyfunc": Case(
        "classification",
        "pyfunc",
        {"train.py": "train_wrapped_logit.py", "wrapper.py": "logit_wrapper.py"},
        "{python} train.py",
        output="outputs/model",
        features=("x 2", "a|b", "1st", "größe"),
        binary=True,
        requires=("statsmodels", "mlflow-skinny"),
    ),
}


@pytest.fixture(scope="module")
def engine() -> Any:
    found, why = image.engine()
    if found is None:
        pytest.skip(f"no Docker engine here: {why}")
    found.api.timeout = 120  # removing a gigabyte image takes longer than the ping's 10 s
    return found


@pytest.fixture(scope="module")
def tags(engine: Any) -> Iterator[list[str]]:
    """The tags the module's tests build, removed once all have run: a later build reuses
    the layers an earlier one made (the same steps on the same inputs) while they exist."""
    from docker.errors import NotFound

    built: list[str] = []
    yield built
    for tag in built:
        with contextlib.suppress(NotFound):
            engine.images.remove(tag, force=True)


@pytest.mark.parametrize("kind", list(MODELS))
def test_the_image_loads_and_serves_the_model_as_the_model_answers(
    engine: Any, tags: list[str], tmp_path: Path, kind: str
) -> None:
    case = MODELS[kind]
    tag = f"mlops-ci-test/{kind}:{uuid.uuid4().hex[:12]}"
    tags.append(tag)
    root = project(tmp_path, case)
    with (root / "mlops.yaml").open("a") as yaml:  # the package section is the file's last
        yaml.write(f"  image: '{tag}'\n")
    config = load_config(root)
    reg = MlflowRegistry.for_config(config)
    started = time.monotonic()
    run = train(config, reg)
    compare(config, reg, run.run_id)
    version = register(config, reg, run.run_id).version
    trained = time.monotonic()
    packaged = package(config, reg, version, build=True)
    print(
        f"\n{kind}: train+compare+register {trained - started:.0f} s, package "
        f"{time.monotonic() - trained:.0f} s, of which the image build "
        f"{packaged.image.seconds or 0:.0f} s"
    )
    assert packaged.image.status == "built", packaged.image
    assert packaged.format == "sklearn", packaged.note  # the native model: ONNX holds neither
    pinned = requirements(packaged)
    for dist in case.requires:
        assert pinned[dist] == f"{dist}=={metadata.version(dist)}", pinned[dist]
    assert "mlflow" not in pinned  # the pyfunc flavor loads with mlflow-skinny

    frame = pd.read_csv(root / "data" / "test.csv", keep_default_na=False, na_values=[""])
    features = frame[list(case.features)]
    want_labels, want, classes = reference(root, case, None, features)
    tol = packaged.served_parity.tolerance if packaged.served_parity else None
    assert tol is not None
    before = time.monotonic()
    with running(engine, tag, timeout=180) as url:
        print(f"{kind}: the container was ready in {time.monotonic() - before:.0f} s")
        answers = served_answers(url, features, classifier=True)
    for path, (labels, scores) in answers.items():
        rows, diff = gap(labels, scores, want_labels, want, tol.atol, tol.rtol)
        assert rows == 0, f"{kind}: the image's {path} differs from the model on {rows} rows"
    assert len(want_labels) == len(frame) and want.shape == (len(frame), len(classes))
