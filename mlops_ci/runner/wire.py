"""What travels between mlops-ci and its model runner: a JSON header and raw array buffers.

Never pickle: the side that reads a message must not run what the other side wrote. A value is
described in the header (``meta``) and its arrays follow as raw bytes of a plain numpy dtype
(numbers, booleans, dates, fixed-width text); an object column travels as JSON scalars, a
categorical column as its codes and categories, a pandas extension column (``Int64``,
``boolean``, ``string``) as its values and its dtype's name. A DataFrame keeps its column
names, order and dtypes, so the model scores in the runner what it would have scored here.
"""

from __future__ import annotations

import json
import math
import struct
from typing import IO, Any

import numpy as np

# The kinds of a worker's error: the parent raises the same kind on its side.
INPUT, TRAINING, REFUSED, VALUES, FAILED = "input", "training", "refused", "values", "failed"
_LENGTH = struct.Struct("<Q")
# The header of one message is JSON; a larger one is not a message this code wrote.
MAX_HEADER = 64 << 20
MAX_ARRAYS = 1 << 16


class WireError(ValueError):
    """A message that cannot be read or a value that cannot be sent (named)."""


def write_message(
    out: IO[bytes], header: dict[str, Any], arrays: list[np.ndarray[Any, Any]]
) -> None:
    """One message: the header (with the number of arrays) and each array's bytes."""
    body = json.dumps({**header, "arrays": len(arrays)}, allow_nan=True).encode()
    parts = [_LENGTH.pack(len(body)), body]
    for array in arrays:
        data = np.ascontiguousarray(array).tobytes()
        parts += [_LENGTH.pack(len(data)), data]
    for part in parts:
        out.write(part)
    out.flush()


def _exactly(source: IO[bytes], n: int) -> bytes:
    data = source.read(n)
    if data is None or len(data) != n:
        raise EOFError("the other side closed the channel")
    return data


def read_message(source: IO[bytes]) -> tuple[dict[str, Any], list[bytes]]:
    """The header and the raw buffers of the next message (EOFError when the peer is gone)."""
    (size,) = _LENGTH.unpack(_exactly(source, _LENGTH.size))
    if size > MAX_HEADER:
        raise WireError(f"a message header of {size} bytes")
    try:
        header = json.loads(_exactly(source, size))
    except ValueError:
        raise WireError("a message header that is not JSON") from None
    if not isinstance(header, dict) or not isinstance(header.get("arrays"), int):
        raise WireError("a message without its array count")
    if not 0 <= header["arrays"] <= MAX_ARRAYS:
        raise WireError(f"a message of {header['arrays']} arrays")
    buffers = []
    for _ in range(header["arrays"]):
        (length,) = _LENGTH.unpack(_exactly(source, _LENGTH.size))
        buffers.append(_exactly(source, length))
    return header, buffers


class Encoder:
    """Gathers the arrays of the values it encodes; ``meta`` of each says where they are."""

    def __init__(self) -> None:
        self.arrays: list[np.ndarray[Any, Any]] = []

    def _array(self, array: np.ndarray[Any, Any], name: str = "value") -> dict[str, Any]:
        if array.dtype.kind not in "biufcMmUS" or array.dtype.fields is not None:
            raise WireError(f"{name}: an array of dtype {array.dtype} cannot be sent")
        self.arrays.append(array)
        return {"t": "array", "a": len(self.arrays) - 1, "dtype": array.dtype.str,
                "shape": list(array.shape)}  # fmt: skip

    def encode(self, value: Any, name: str = "value") -> dict[str, Any]:
        import pandas as pd

        if value is None:
            return {"t": "none"}
        if isinstance(value, (bytes, bytearray, memoryview)):
            return {"t": "bytes", "v": self._array(np.frombuffer(bytes(value), np.uint8))}
        if isinstance(value, pd.DataFrame):
            return {
                "t": "frame",
                "columns": [
                    [_scalar(c, f"{name} column name"), self._column(value[c], f"column {c!r}")]
                    for c in value.columns
                ]
                if value.columns.is_unique
                else _duplicate(value),
            }
        if isinstance(value, pd.Series):
            return {
                "t": "series",
                "name": _scalar(value.name, name),
                "v": self._column(value, name),
            }
        if isinstance(value, dict):
            return {"t": "dict", "items": [[_scalar(k, name), self.encode(v, f"{name}[{k!r}]")]
                                           for k, v in value.items()]}  # fmt: skip
        if isinstance(value, (list, tuple)):
            return {
                "t": "list",
                "items": [self.encode(v, f"{name}[{i}]") for i, v in enumerate(value)],
            }
        if isinstance(value, np.ndarray):
            if value.dtype.kind == "O":
                return {"t": "objects", "shape": list(value.shape),
                        "values": [_scalar(v, name) for v in value.ravel().tolist()]}  # fmt: skip
            return self._array(value, name)
        return {"t": "scalar", "v": _scalar(value, name)}

    def _column(self, series: Any, name: str) -> dict[str, Any]:
        import pandas as pd

        dtype = series.dtype
        if isinstance(dtype, pd.CategoricalDtype):
            return {
                "t": "category",
                "codes": self._array(series.cat.codes.to_numpy()),
                "categories": self.encode(np.asarray(dtype.categories), f"{name} categories"),
                "ordered": bool(dtype.ordered),
            }
        if isinstance(dtype, np.dtype):
            return self.encode(series.to_numpy(), name)
        values = series.to_numpy(dtype=object)
        return {"t": "extension", "dtype": str(dtype), "v": self.encode(values, name)}


def _duplicate(frame: Any) -> Any:
    dup = [str(c) for c in frame.columns[frame.columns.duplicated()]]
    raise WireError(f"the data has column(s) {', '.join(dup)} twice")


def _scalar(value: Any, name: str) -> Any:
    """A JSON scalar standing for ``value`` (numpy scalars as Python's, pandas' NA marked)."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else {"float": repr(value)}
    if isinstance(value, np.generic):
        return _scalar(value.item(), name)
    import pandas as pd

    if value is pd.NA:
        return {"na": True}
    if value is pd.NaT:
        return {"nat": True}
    if isinstance(value, pd.Timestamp):
        return {"timestamp": value.isoformat()}
    raise WireError(f"{name}: a value of type {type(value).__name__} cannot be sent to the model")


def _unscalar(value: Any) -> Any:
    if not isinstance(value, dict):
        return value
    import pandas as pd

    if "float" in value:
        return float(value["float"])
    if "na" in value:
        return pd.NA
    if "nat" in value:
        return pd.NaT
    if "timestamp" in value:
        return pd.Timestamp(value["timestamp"])
    raise WireError(f"an unknown scalar {value!r}")


class _Buffers(list):  # type: ignore[type-arg]
    """A message's buffers, each of which one array may take, once: a meta naming a buffer
    twice would make a small message decode into a huge value."""

    def __init__(self, buffers: list[bytes]) -> None:
        super().__init__(buffers)
        self.taken: set[int] = set()

    def take(self, index: Any) -> bytes:
        if not isinstance(index, int) or not 0 <= index < len(self) or index in self.taken:
            raise WireError(f"an array names buffer {index!r}, absent or taken")
        self.taken.add(index)
        return bytes(self[index])


def decode(meta: dict[str, Any], buffers: list[bytes]) -> Any:
    """The value ``meta`` describes, its arrays read from ``buffers`` (copies: writable)."""
    if not isinstance(buffers, _Buffers):
        buffers = _Buffers(buffers)
    kind = meta.get("t")
    if kind == "none":
        return None
    if kind == "scalar":
        return _unscalar(meta["v"])
    if kind == "array":
        dtype = np.dtype(meta["dtype"])
        if dtype.kind not in "biufcMmUS" or dtype.fields is not None:
            raise WireError(f"an array of dtype {dtype} in a message")
        data = buffers.take(meta["a"]) if isinstance(buffers, _Buffers) else buffers[meta["a"]]
        return np.frombuffer(data, dtype).reshape(meta["shape"]).copy()
    if kind == "bytes":
        return bytes(decode(meta["v"], buffers))
    if kind == "objects":
        out = np.empty(len(meta["values"]), dtype=object)
        out[:] = [_unscalar(v) for v in meta["values"]]
        return out.reshape(meta["shape"])
    if kind == "list":
        return [decode(m, buffers) for m in meta["items"]]
    if kind == "dict":
        return {k: decode(m, buffers) for k, m in meta["items"]}
    import pandas as pd

    if kind == "frame":
        columns = [(c, _frame_column(_column(m, buffers))) for c, m in meta["columns"]]
        frame = pd.DataFrame({i: v for i, (_, v) in enumerate(columns)})
        frame.columns = pd.Index([c for c, _ in columns], dtype=object if columns else None)
        return frame
    if kind == "series":
        return pd.Series(_column(meta["v"], buffers), name=meta["name"])
    raise WireError(f"an unknown value kind {kind!r} in a message")


def _frame_column(values: Any) -> Any:
    """An object array stays object in the frame (pandas 3 would infer its text as ``str``
    and its None as NaN)."""
    import pandas as pd

    if isinstance(values, np.ndarray) and values.dtype == object:
        return pd.Series(values, dtype=object, copy=False)
    return values


def _column(meta: dict[str, Any], buffers: list[bytes]) -> Any:
    import pandas as pd

    if meta.get("t") == "category":
        categories = decode(meta["categories"], buffers)
        return pd.Categorical.from_codes(
            decode(meta["codes"], buffers), categories=categories, ordered=meta["ordered"]
        )
    if meta.get("t") == "extension":
        return pd.array(decode(meta["v"], buffers), dtype=meta["dtype"])
    return decode(meta, buffers)


def send(out: IO[bytes], header: dict[str, Any], values: dict[str, Any]) -> None:
    """``header`` with ``values`` (any of what :class:`Encoder` takes) encoded beside it."""
    enc = Encoder()
    meta = {key: enc.encode(value, key) for key, value in values.items()}
    write_message(out, {**header, "values": meta}, enc.arrays)


def receive(source: IO[bytes]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The next message's header and its decoded values."""
    header, buffers = read_message(source)
    try:
        meta = header.pop("values", {}) or {}
        taken = _Buffers(buffers)
        values = {key: decode(m, taken) for key, m in meta.items()}
        if len(taken.taken) != len(buffers):
            raise WireError("a message with buffers no value takes")
        return header, values
    except WireError:
        raise
    except Exception as err:  # a malformed message: whatever decoding it raised, named once
        raise WireError(f"a malformed message ({type(err).__name__}: {err})"[:300]) from None
