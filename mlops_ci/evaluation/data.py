"""The evaluation data both models are scored on: read once, checked, fingerprinted."""

from __future__ import annotations

import difflib
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlops_ci.errors import InputError
from mlops_ci.provenance import sha256_file

if TYPE_CHECKING:
    from mlops_ci.config.types import Config


@dataclass(frozen=True)
class EvaluationData:
    path: str  # as written in mlops.yaml
    sha256: str
    features: Any  # pandas.DataFrame, columns in model order; a tensor model's: model.Tensors
    target: Any  # pandas.Series
    slices: Any = None  # pandas.DataFrame of the evaluate.slices columns (None: no slices)

    @property
    def rows(self) -> int:
        return len(self.features)


TENSOR_SUFFIXES = (".npz", ".npy")  # a tensor model's evaluation data (issue 43)


def load_table(config: Config, verb: str) -> EvaluationData:
    """evaluate.data for a verb that takes a table's columns: an array file (a tensor
    model's) is bad input naming the verb, until the verb takes tensors too."""
    data = load_evaluation(config)
    if not hasattr(data.features, "iloc"):
        raise InputError(
            f"{verb}: evaluate.data '{data.path}' holds a tensor model's arrays; {verb} takes a "
            "table's columns so far (tensor models: validate, train, compare and register)",
        )
    return data


def _tensor_evaluation(config: Config, path: Path, nrows: int | None) -> EvaluationData:
    """A tensor model's evaluation data: an ``.npz`` of one array per input, the target and
    any 1-D metadata arrays to slice by, every array with the same rows, memory-mapped
    (``evaluation/arrays.py``). The model takes its inputs by name and leaves the rest."""
    import numpy as np
    import pandas as pd

    from mlops_ci.evaluation.arrays import read_arrays
    from mlops_ci.model.tensors import Tensors

    spec = config.evaluate
    arrays = read_arrays(path, config.resolve(".mlops/cache/arrays"), spec.data)
    names = ", ".join(arrays)
    if spec.target not in arrays:
        close = difflib.get_close_matches(spec.target, list(arrays), n=1)
        guess = f"; did you mean '{close[0]}'?" if close else ""
        raise InputError(
            f"mlops.yaml: evaluate.target: '{spec.target}' is not an array of {spec.data} "
            f"(arrays: {names}){guess}"
        )
    for key, wanted in (("features", spec.features), ("slices", spec.slices)):
        missing = [n for n in wanted if n not in arrays]
        if missing:
            raise InputError(
                f"mlops.yaml: evaluate.{key}: {', '.join(repr(n) for n in missing)} not "
                f"array(s) of {spec.data} (arrays: {names})"
            )
    if nrows is not None:
        arrays = {n: a[:nrows] for n, a in arrays.items()}
    target = arrays[spec.target]
    if target.ndim == 2 and target.shape[1] == 1:
        target = target[:, 0]
    if target.ndim != 1:
        raise InputError(
            f"{spec.data}: the target '{spec.target}' is {list(target.shape)}; it must hold one "
            "value per row"
        )
    for name in spec.slices:
        if arrays[name].ndim != 1:
            raise InputError(f"{spec.data}: slice array '{name}' must hold one value per row")
    inputs = list(spec.features) or [n for n in arrays if n != spec.target]
    rows = Tensors({n: arrays[n] for n in [*inputs, spec.target, *spec.slices]}, spec.data)
    if not len(rows):
        raise InputError(f"{spec.data}: has no rows to evaluate on")
    return EvaluationData(
        path=spec.data,
        sha256=sha256_file(path),
        features=Tensors({n: arrays[n] for n in inputs}, spec.data),
        target=pd.Series(np.asarray(target), name=spec.target),
        slices=pd.DataFrame({n: np.asarray(arrays[n]) for n in spec.slices})
        if spec.slices
        else None,
    )


def _check_numbers(values: Any, column: str, where: str) -> None:
    """A column of numbers with a stray word ('n/a', '1,5') is a data error naming its row;
    a column of text (most values are not numbers) is a text feature and left alone."""
    import pandas as pd

    if values.dtype.kind != "O":
        return
    present = values.dropna()
    numbers = pd.to_numeric(present, errors="coerce")
    if numbers.isna().all() or numbers.notna().sum() * 2 < len(present):
        return
    bad = numbers.isna().to_numpy().nonzero()[0]
    first = present.index[bad[0]]
    raise InputError(
        f"{where}:{int(first) + 2}: column '{column}': {str(present.iloc[bad[0]])[:40]!r} is "
        "not a number" + (f" (and {len(bad) - 1} more rows)" if len(bad) > 1 else ""),
        hint="fix the data, or leave such cells empty for a missing value",
    )


def check_columns(config: Config) -> list[str]:
    """Problems with evaluate.data's header for `validate`: the target and the listed features
    must be columns of it. Nothing to say when the file is not there (yet)."""
    import csv

    spec = config.evaluate
    path = config.resolve(spec.data)
    if not path.is_file():
        return []
    if path.suffix in TENSOR_SUFFIXES:
        header = _array_names(path)
        if header is None:
            return [f"{spec.data}: cannot be read as an array file (.npz or .npy)"]
        return _missing_names(config, header, "an array")
    try:
        with path.open(encoding="utf-8", newline="") as fh:
            header = next(csv.reader(fh), [])
    except (OSError, UnicodeDecodeError) as err:
        return [f"{spec.data}: cannot be read as CSV ({err})"]
    return _missing_names(config, header, "a column")


def _array_names(path: Path) -> list[str] | None:
    """The arrays an .npz (or .npy) holds, from its directory alone; None: not readable."""
    import zipfile

    if path.suffix == ".npy":
        return [path.stem]
    try:
        with zipfile.ZipFile(path) as archive:
            return [n.removesuffix(".npy") for n in archive.namelist() if not n.endswith("/")]
    except (zipfile.BadZipFile, OSError):
        return None


def _missing_names(config: Config, header: list[str], what: str) -> list[str]:
    """evaluate's target, features, slices and dtypes that ``header`` does not hold."""
    from mlops_ci.config.types import line_of

    spec = config.evaluate
    problems = []
    name = config.path.name
    if spec.target not in header:
        close = difflib.get_close_matches(spec.target, header, n=1)
        guess = f"; did you mean '{close[0]}'?" if close else ""
        problems.append(
            f"{name}:{line_of(config, ['evaluate', 'target'])}: evaluate.target: "
            f"'{spec.target}' is not {what} of {spec.data} "
            f"({what.split()[-1]}s: {', '.join(header[:20])}){guess}"
        )
    for key, wanted in (
        ("features", spec.features),
        ("slices", spec.slices),
        ("dtypes", tuple(spec.dtypes)),
    ):
        missing = [f for f in wanted if f not in header]
        if missing:
            problems.append(
                f"{name}:{line_of(config, ['evaluate', key])}: evaluate.{key}: "
                f"{', '.join(missing)} not {what.split()[-1]}s of {spec.data}"
            )
    return problems


def load_evaluation(config: Config, nrows: int | None = None) -> EvaluationData:
    """Read evaluate.data; missing file, columns or rows are errors naming them. The columns of
    ``evaluate.dtypes``, and a column of True/False with gaps, are given their kind by the
    input contract (``model/features.py``) from the values ``read_csv`` read (a whole-number
    category stays a number, as a model fitted on the file read so has it); a value a kind
    does not take is an error naming its row."""
    import pandas as pd

    from mlops_ci.model.features import read_kinds, typed_frame

    spec = config.evaluate
    path = config.resolve(spec.data)
    if not path.is_file():
        raise InputError(f"mlops.yaml: evaluate.data: file '{spec.data}' not found ({path})")
    if path.suffix in TENSOR_SUFFIXES:
        return _tensor_evaluation(config, path, nrows)
    try:
        # Only empty cells are missing: "n/a" or "NA" in a number column is a data error to name.
        frame = pd.read_csv(path, nrows=nrows, keep_default_na=False, na_values=[""])
    except (ValueError, pd.errors.ParserError) as err:
        raise InputError(
            f"{spec.data}: cannot be read as CSV: {str(err).splitlines()[0]}"
        ) from None
    columns = [str(c) for c in frame.columns]
    wanted = [spec.target, *spec.features]
    missing = [c for c in wanted if c not in columns]
    if missing:
        raise InputError(
            f"{spec.data}: missing column(s) {', '.join(repr(c) for c in missing)} "
            f"named in mlops.yaml evaluate (columns: {', '.join(columns)})"
        )
    unknown = [c for c in spec.slices if c not in columns]
    if unknown:
        raise InputError(
            f"mlops.yaml: evaluate.slices: {', '.join(repr(c) for c in unknown)} not column(s) "
            f"of {spec.data} (columns: {', '.join(columns)})"
        )
    if frame.empty:
        raise InputError(f"{spec.data}: has no rows to evaluate on")
    features = list(spec.features) or [c for c in columns if c != spec.target]
    empty = frame[spec.target].isna().to_numpy().nonzero()[0]
    if len(empty):
        raise InputError(
            f"{spec.data}:{empty[0] + 2}: column '{spec.target}' (the target) is empty"
            + (f" (and {len(empty) - 1} more rows)" if len(empty) > 1 else "")
        )
    kinds = read_kinds(frame[features], spec.dtypes)
    for column in features:
        if column not in kinds:
            _check_numbers(frame[column], column, spec.data)
    return EvaluationData(
        path=spec.data,
        sha256=hashlib.sha256(path.read_bytes()).hexdigest(),
        features=typed_frame(frame[features], kinds, spec.data),
        target=frame[spec.target],
        slices=frame[list(spec.slices)] if spec.slices else None,
    )
