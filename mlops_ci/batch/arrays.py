"""NumPy to Arrow and back on the scoring path, without pyarrow's pandas bridge.

``pa.array`` and ``to_numpy`` import pandas on their first call in a process (to ask whether a
value is a pandas object): about 0.3 s on the 2-core machine, on the critical path of every
`mlops-ci batch-score` command, as long as scoring 200,000 rows. These build the same arrays
from and into the Arrow buffers for what scoring makes (numbers, bools, ASCII text); anything
else goes pyarrow's way, which is only slower to start.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa

_INT32_MAX = 2**31 - 1


def floats(column: Any) -> npt.NDArray[np.float64]:
    """A float64 Arrow column (chunked or not) as float64 values, NaN where null."""
    chunks = column.chunks if isinstance(column, pa.ChunkedArray) else [column]
    out = np.empty(len(column), np.float64)
    at = 0
    for chunk in chunks:
        n = len(chunk)
        validity, data = chunk.buffers()[:2]
        if n:
            out[at : at + n] = np.frombuffer(data, np.float64, n, chunk.offset * 8)
        if chunk.null_count:
            bits = np.unpackbits(np.frombuffer(validity, np.uint8), bitorder="little")
            out[at : at + n][bits[chunk.offset : chunk.offset + n] == 0] = np.nan
        at += n
    return out


def from_numpy(values: npt.NDArray[Any], text: bool = False) -> Any:
    """A 1-D array as the Arrow array ``pa.array`` makes of it (NaN stays a value, not a
    null); ``text``: as ``pa.string()``, the way labels are written."""
    values = np.asarray(values)
    kind = values.dtype.kind
    if text or kind in "OU":
        return _text(values)
    if kind == "b":
        bits = np.packbits(values, bitorder="little")
        return pa.Array.from_buffers(pa.bool_(), len(values), [None, pa.py_buffer(bits)])
    if kind in "iuf" and values.ndim == 1:
        data = pa.py_buffer(np.ascontiguousarray(values))
        return pa.Array.from_buffers(pa.from_numpy_dtype(values.dtype), len(values), [None, data])
    return pa.array(values)


def _text(values: npt.NDArray[Any]) -> Any:
    """Python or NumPy strings as ``pa.string()``: one join, its offsets from the lengths
    (in characters: equal to bytes for ASCII text; other text goes through ``pa.array``)."""
    try:
        joined = "".join(values.tolist() if values.dtype.kind == "U" else values)
    except TypeError:  # None or a number among them
        return pa.array(values, pa.string())
    if not joined.isascii() or len(joined) > _INT32_MAX:
        return pa.array(values, pa.string())
    lengths = np.fromiter(map(len, values), np.int64, len(values))
    offsets = np.zeros(len(values) + 1, np.int32)
    np.cumsum(lengths, out=offsets[1:])
    buffers = [None, pa.py_buffer(offsets), pa.py_buffer(joined.encode("ascii"))]
    return pa.Array.from_buffers(pa.string(), len(values), buffers)


def taken(names: Sequence[str], index: npt.NDArray[np.integer[Any]]) -> Any:
    """``pa.string()`` of ``names[i]`` for each ``i`` in ``index``, built from the buffers
    (``Array.take`` would import ``pyarrow.compute``: ~45 ms of every command's start). The
    rows' names are joined as they are, so memory is what the column holds: a [rows, longest
    name] array padded to the longest took 1,000 bytes a row beside a 1,000-character class
    name, however short the others."""
    encoded = [name.encode("utf-8") for name in names]
    lengths = np.array([len(e) for e in encoded], np.int64)[index]
    offsets = np.zeros(len(index) + 1, np.int64)
    np.cumsum(lengths, out=offsets[1:])
    if offsets[-1] > _INT32_MAX:
        return pa.array([names[i] for i in index], pa.string())
    data = b"".join(np.array(encoded, dtype=object)[index].tolist())
    buffers = [None, pa.py_buffer(offsets.astype(np.int32)), pa.py_buffer(data)]
    return pa.Array.from_buffers(pa.string(), len(index), buffers)
