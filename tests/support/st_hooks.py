"""Schemathesis hooks for the serving tests: the one Open Inference Protocol rule JSON Schema
cannot state (a tensor's shape multiplies out to the number of values in its data) applied to
the requests generated as valid. Invalid ones are left as generated, so they still test refusal.
"""

from __future__ import annotations

from typing import Any

import schemathesis
from schemathesis import GenerationMode


@schemathesis.hook
def map_case(context: Any, case: Any) -> Any:
    meta = case.meta
    positive = meta is not None and meta.generation.mode == GenerationMode.POSITIVE
    body = case.body
    if positive and case.path.endswith("/infer") and isinstance(body, dict):
        tensors = body.get("inputs")
        if isinstance(tensors, list) and tensors and all(isinstance(t, dict) for t in tensors):
            _shape_tensors(tensors)
    return case


def _shape_tensors(tensors: list[dict[str, Any]]) -> None:
    if len(tensors) == 1 and len(tensors[0].get("shape", [])) == 2 and tensors[0]["shape"][1] != 1:
        tensor = tensors[0]
        width, data = tensor["shape"][1], tensor["data"]
        if data and isinstance(data[0], list):  # nested: one list a row
            tensor["shape"] = [len(data), width]
        else:  # flat, row-major: whole rows only
            rows = max(len(data) // width, 1)
            tensor["data"] = (data * width)[: rows * width]
            tensor["shape"] = [rows, width]
        return
    rows = min(len(t["data"]) for t in tensors)  # one tensor per column: equal lengths
    for tensor in tensors:
        tensor["data"] = tensor["data"][:rows]
        tensor["shape"] = [rows, *tensor["shape"][1:]]
