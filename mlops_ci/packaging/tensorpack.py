"""Packaging a tensor model (issue 43): an ONNX graph whose inputs are named tensors of any
rank, evaluated on an ``.npz`` of arrays.

There is nothing to convert: the package serves the user's graph with mlops-ci's outputs added
(``label`` and ``probabilities``, or ``variable``: ``model.onnxmodel.standardize``), its inputs
keeping their names (the ``tensors`` layout). Parity is between the user's graph and the
standardized one on every evaluation row — the same onnxruntime on the same arrays, so it is
exact, and a difference is a defect of the standardizing, refused. The profile times the
standardized graph on the evaluation rows with the session options and execution providers
serving uses (``steps/package.py`` then loads the package as ``serve`` does).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mlops_ci.config.types import Config
from mlops_ci.errors import GateFailed, InputError
from mlops_ci.model.onnxmodel import OnnxModel, rows_per_call, standardize
from mlops_ci.model.tensors import Tensors
from mlops_ci.packaging import convert, sessions
from mlops_ci.packaging.profile import ONNX, Probe, feeds_file
from mlops_ci.packaging.runtime import ONNX_FILE, Engine

EXACT = convert.Tolerance(0.0, 0.0, 0.0)


@dataclass(frozen=True)
class TensorPackage:
    folder: Path  # the model files to package: the standardized graph
    layout: str  # tensors
    native: convert.Outputs  # the user's graph on every evaluation row
    parity: convert.Parity  # the standardized graph against it: exact
    engine: Engine  # for the profile


def tensor_model(native: Any, rows: Any, label: str) -> tuple[OnnxModel, Tensors]:
    """The version's model and the evaluation rows, both tensors; else bad input saying which
    is a table."""
    takes = getattr(native, "tensors", None)
    if isinstance(rows, Tensors) and isinstance(native, OnnxModel) and takes is not None:
        return native, rows
    if isinstance(rows, Tensors):
        raise InputError(
            f"evaluate.data holds arrays (a tensor model's), but {label} model takes a table",
            hint="evaluate.data: the CSV or Parquet the model was trained on",
        )
    assert takes is not None
    raise InputError(
        f"{label} model takes tensors ({takes.describe()}); evaluate.data is a table",
        hint="evaluate.data: an .npz holding an array per input name and the target",
    )


def package_tensors(
    config: Config, native: OnnxModel, rows: Tensors, work: Path, probe_rows: int
) -> TensorPackage:
    """The standardized graph under ``work/onnx``, its exact parity and its engine."""
    assert native.tensors is not None
    data, layout = standardize(native, ())
    folder = work / "onnx"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / ONNX_FILE
    path.write_bytes(data)
    opts = config.package.profile
    sess, ran = sessions.open_onnx(
        str(path), opts.intra_op_threads, opts.graph_optimization_level, config.package.providers
    )
    schema = native.tensors
    names = [o.name for o in sess.get_outputs()]
    step = rows_per_call(rows)
    ours = [convert.onnx_outputs(sess, part.for_model(schema), names) for part in rows.calls(step)]
    said = outputs_of(native, rows)
    parity = convert.check_parity(said, joined(ours), EXACT)
    if not parity.passed:
        raise GateFailed(
            f"the standardized graph does not answer like the model on {parity.differing_rows} "
            f"of {parity.rows} rows (max |Δ| {parity.max_abs_diff:.3g})",
            hint="this is a defect of mlops-ci's standardizing; please report it with the model",
        )

    def feeds(n: int) -> dict[str, Any]:
        return rows.take(np.arange(n) % len(rows)).for_model(schema)

    def row(i: int) -> dict[str, Any]:
        return rows.take([i % len(rows)]).for_model(schema)  # type: ignore[arg-type]

    def predict(x: dict[str, Any]) -> Any:
        return sess.run(None, x)

    probe = Probe(ONNX, path, feeds_file(work / "tensors", feeds(probe_rows)))
    size = path.stat().st_size
    engine = Engine("onnxruntime", predict, feeds, row, probe, size, provider=ran.describe())
    return TensorPackage(folder, layout, said, parity, engine)


def outputs_of(model: OnnxModel, rows: Tensors) -> convert.Outputs:
    """The user's graph on ``rows`` (one pass): labels and probabilities, or values."""
    labels, scores = model.scored(rows)
    return convert.Outputs(labels, scores)


def joined(parts: list[convert.Outputs]) -> convert.Outputs:
    labels = None
    if parts and parts[0].labels is not None:
        labels = np.concatenate([np.asarray(p.labels) for p in parts])
    return convert.Outputs(labels, np.concatenate([p.scores for p in parts]))
