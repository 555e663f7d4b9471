"""The input contract of a model that takes tensors, not table columns (issue 43): images
``[N, 3, H, W]``, token ids and an attention mask ``[N, L]``, audio frames, embeddings.

A table model's contract is its columns (``features.FeatureSchema``); a tensor model's is each
input's name, element type and dims, read once from the ONNX graph (a dynamic dim is ``-1``; the
first dim is the rows') and kept with the model. Every path that hands a tensor model arrays —
evaluation data, ``/score``, v2 ``infer``, ``batch-score`` — checks them here, so a wrong shape
or type is refused with the same words wherever it arrives, naming the input.

Types are converted only where no value changes meaning: whole numbers to any integer type that
holds them, numbers to floats (float64 to float32 rounds, as it does for table models; a value
beyond float32's range is refused), 0/1 to bool. NaN and infinity are refused: no input of a
network means "missing" by NaN, and one NaN turns every score it touches into NaN.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from mlops_ci.errors import InputError

# onnxruntime's type strings -> numpy's dtype names; the v2 protocol's names for them.
ONNX_TYPES = {
    "tensor(float)": "float32",
    "tensor(double)": "float64",
    "tensor(float16)": "float16",
    "tensor(int64)": "int64",
    "tensor(int32)": "int32",
    "tensor(int16)": "int16",
    "tensor(int8)": "int8",
    "tensor(uint64)": "uint64",
    "tensor(uint32)": "uint32",
    "tensor(uint16)": "uint16",
    "tensor(uint8)": "uint8",
    "tensor(bool)": "bool",
}
V2_TYPES = {
    "float32": "FP32",
    "float64": "FP64",
    "float16": "FP16",
    "int64": "INT64",
    "int32": "INT32",
    "int16": "INT16",
    "int8": "INT8",
    "uint64": "UINT64",
    "uint32": "UINT32",
    "uint16": "UINT16",
    "uint8": "UINT8",
    "bool": "BOOL",
}
DYNAMIC = -1


@dataclass(frozen=True)
class TensorInput:
    """One input: ``shape[0]`` is the rows; ``-1`` where any size is taken."""

    name: str
    dtype: str  # numpy's name: float32, int64, bool, ...
    shape: tuple[int, ...]

    @property
    def datatype(self) -> str:
        """The v2 protocol's name of the element type (FP32, INT64, BOOL, ...)."""
        return V2_TYPES[self.dtype]

    def describe(self) -> str:
        return f"{self.name} {list(self.shape)} {self.dtype}"


@dataclass(frozen=True)
class TensorSchema:
    """A tensor model's inputs, in the graph's order."""

    inputs: tuple[TensorInput, ...]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(i.name for i in self.inputs)

    def describe(self) -> str:
        return ", ".join(i.describe() for i in self.inputs)

    def to_list(self) -> list[dict[str, Any]]:
        return [{"name": i.name, "dtype": i.dtype, "shape": list(i.shape)} for i in self.inputs]

    @staticmethod
    def from_list(items: Any, where: str) -> TensorSchema:
        """The contract as ``to_list`` wrote it (a package manifest, a run's artifact)."""
        if not isinstance(items, list) or not items:
            raise InputError(f"{where}: 'tensors' must be a non-empty list of inputs")
        found = []
        for k, item in enumerate(items):
            at = f"{where}: tensors[{k}]"
            if not isinstance(item, dict) or not isinstance(item.get("name"), str):
                raise InputError(f"{at}: must be {{name, dtype, shape}}")
            dtype, shape = item.get("dtype"), item.get("shape")
            if dtype not in V2_TYPES:
                raise InputError(f"{at}: dtype {dtype!r} is not one of {', '.join(V2_TYPES)}")
            if not isinstance(shape, list) or not shape or not all(_dim(d) for d in shape):
                raise InputError(f"{at}: shape must be a list of sizes ≥ 1 or -1, rows first")
            found.append(TensorInput(item["name"], dtype, tuple(shape)))
        return _unique(found, where)

    @staticmethod
    def of_graph(inputs: Iterable[Any], where: str) -> TensorSchema:
        """The contract of an onnxruntime session's ``get_inputs()``: a symbolic or unknown
        dim is dynamic. A graph input of a type no array here can hold is bad input."""
        found = []
        for i in inputs:
            dtype = ONNX_TYPES.get(i.type)
            if dtype is None:
                raise InputError(
                    f"{where}: input '{i.name}' is {i.type}; a tensor model's inputs are "
                    f"numbers or bools ({', '.join(sorted(set(ONNX_TYPES.values())))})"
                )
            dims = tuple(d if isinstance(d, int) and d > 0 else DYNAMIC for d in i.shape or ())
            if not dims:
                raise InputError(
                    f"{where}: input '{i.name}' has no dims (a scalar, or no shape declared); "
                    "inputs have rows",
                    hint="export it with its dims, the first one the rows' (dynamic)",
                )
            if dims[0] != DYNAMIC:
                raise InputError(
                    f"{where}: input '{i.name}' {list(dims)} takes exactly {dims[0]} row(s) a "
                    "call; mlops-ci scores and serves any number",
                    hint="export it with a dynamic first dim (torch.onnx.export's dynamic_axes="
                    f"{{'{i.name}': {{0: 'rows'}}}})",
                )
            found.append(TensorInput(i.name, dtype, dims))
        return _unique(found, where)

    def check(self, arrays: Mapping[str, Any], where: str) -> dict[str, npt.NDArray[Any]]:
        """``arrays`` as the model takes them, in the graph's order; anything that does not
        fit the contract is bad input naming the input, what it got and what it takes."""
        missing = [i.name for i in self.inputs if i.name not in arrays]
        if missing:
            raise InputError(
                f"{where}: input '{missing[0]}' is missing; the model takes {self.describe()}"
            )
        extra = [name for name in arrays if name not in self.names]
        if extra:
            raise InputError(
                f"{where}: '{extra[0]}' is not an input of the model; it takes {self.describe()}"
            )
        fed = {i.name: conform(i, arrays[i.name], where) for i in self.inputs}
        rows = {name: a.shape[0] for name, a in fed.items()}
        if len(set(rows.values())) > 1:
            told = ", ".join(f"'{n}' {r}" for n, r in rows.items())
            raise InputError(f"{where}: the inputs' rows differ ({told}); each row needs all")
        return fed


class Tensors:
    """Rows of a tensor model's inputs: named arrays that share their first dim (memory-mapped
    when read from a file). What a table holds in its columns, a tensor model takes here;
    ``take`` cuts rows out of every array without reading the rest."""

    def __init__(self, arrays: Mapping[str, npt.NDArray[Any]], where: str) -> None:
        if not arrays:
            raise InputError(f"{where}: holds no input arrays")
        rows = {name: (a.shape[0] if a.ndim else None) for name, a in arrays.items()}
        first = next(iter(rows.values()))
        odd = [n for n, r in rows.items() if r is None or r != first]
        if odd:
            told = ", ".join(f"'{n}' {list(arrays[n].shape)}" for n in list(rows)[:6])
            raise InputError(f"{where}: array '{odd[0]}' has other rows than the rest ({told})")
        self.arrays = dict(arrays)
        self.where = where

    def __len__(self) -> int:
        return int(next(iter(self.arrays.values())).shape[0])

    @property
    def columns(self) -> list[str]:
        """The arrays' names (where code lists a table's columns)."""
        return list(self.arrays)

    @property
    def dtypes(self) -> list[np.dtype[Any]]:
        return [a.dtype for a in self.arrays.values()]

    def head(self, rows: int) -> Tensors:
        """The first ``rows`` rows, read into memory (an example travels; a mapping does not)."""
        return Tensors({n: np.array(a[:rows]) for n, a in self.arrays.items()}, self.where)

    def calls(self, rows: int) -> Iterator[Tensors]:
        """The rows ``rows`` at a time, in order: a model's calls over a memory-mapped file."""
        for at in range(0, len(self), rows):
            yield self.take(slice(at, at + rows))

    def take(self, rows: slice | npt.NDArray[Any]) -> Tensors:
        return Tensors({n: a[rows] for n, a in self.arrays.items()}, self.where)

    def fit_shapes(self, schema: TensorSchema) -> None:
        """Bad input unless every input of ``schema`` is here with its shape (nothing read:
        the values are checked as they are fed, a call's rows at a time)."""
        for spec in schema.inputs:
            if spec.name not in self.arrays:
                raise InputError(
                    f"{self.where}: input '{spec.name}' is missing; the model takes "
                    f"{schema.describe()}"
                )
            fits_shape(spec, self.arrays[spec.name].shape, f"{self.where}: input '{spec.name}'")

    def for_model(self, schema: TensorSchema) -> dict[str, npt.NDArray[Any]]:
        """The model's inputs out of these arrays (others, such as metadata, are left out),
        checked against its contract."""
        return schema.check({n: a for n, a in self.arrays.items() if n in schema.names}, self.where)


def conform(spec: TensorInput, values: Any, where: str) -> npt.NDArray[Any]:
    """One input's values as an array of ``spec``'s type and shape, or bad input naming it."""
    at = f"{where}: input '{spec.name}'"
    try:
        array = np.asarray(values)
    except (ValueError, TypeError):
        raise InputError(f"{at}: not a rectangular array (rows of unequal length?)") from None
    fits_shape(spec, array.shape, at)
    if array.shape[0] == 0:
        raise InputError(f"{at}: no rows")
    return _typed(array, spec.dtype, at)


def fits_shape(spec: TensorInput, shape: tuple[int, ...], at: str) -> None:
    """Bad input naming ``at`` unless ``shape`` fits ``spec``'s dims (-1: any size)."""
    if len(shape) != len(spec.shape) or any(
        want != DYNAMIC and got != want for got, want in zip(shape, spec.shape, strict=False)
    ):
        raise InputError(
            f"{at}: shape {list(shape)} does not fit the model's {list(spec.shape)} (-1: any size)"
        )


def _typed(array: npt.NDArray[Any], dtype: str, at: str) -> npt.NDArray[Any]:
    want = np.dtype(dtype)
    kind = array.dtype.kind
    if kind not in "biuf":
        raise InputError(f"{at}: holds {_what(array)}; the model takes {dtype}")
    if want.kind == "f":
        if kind == "f" and not np.isfinite(array).all():
            raise InputError(f"{at}: holds NaN or infinity; the model takes finite {dtype}")
        if kind == "f" and array.dtype.itemsize > want.itemsize and array.size:
            limit = float(np.finfo(want).max)
            if float(np.abs(array).max()) > limit:
                raise InputError(f"{at}: holds a value beyond {dtype}'s range (±{limit:.4g})")
        return array.astype(want, copy=False)
    if want.kind == "b":
        if kind != "b" and not np.isin(array, (0, 1)).all():
            raise InputError(f"{at}: holds values other than 0/1 or true/false; it is bool")
        return array.astype(want, copy=False)
    # an integer type: whole numbers within its range
    if kind == "f" and not (np.isfinite(array).all() and (array == np.round(array)).all()):
        raise InputError(f"{at}: holds a value that is not a whole number; it is {dtype}")
    if array.size:
        info = np.iinfo(want)
        low, high = array.min(), array.max()
        # a float compares against the first value past the type (a power of two, exact in
        # float64): int64's max itself rounds up to 2**63, which would let 2**63 wrap
        past = 2.0 ** (info.bits - 1 if info.min < 0 else info.bits)
        over = high >= past if kind == "f" else high > info.max
        if low < info.min or over:
            raise InputError(
                f"{at}: holds a value outside {dtype}'s range ({info.min}..{info.max})"
            )
    return array.astype(want, copy=False)


def _what(array: npt.NDArray[Any]) -> str:
    if array.dtype.kind in "US":
        return "text"
    if array.dtype.kind == "O":
        return "values that are not all numbers (null, text or a mix)"
    return f"{array.dtype} values"


def _dim(d: Any) -> bool:
    return type(d) is int and (d >= 1 or d == DYNAMIC)


def _unique(found: list[TensorInput], where: str) -> TensorSchema:
    names = [i.name for i in found]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise InputError(f"{where}: input '{twice[0]}' is named twice")
    return TensorSchema(tuple(found))
