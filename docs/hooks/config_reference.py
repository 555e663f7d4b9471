"""The configuration reference, generated from the JSON Schema at every build.

Why: ``mlops_ci/config/schema/mlops.schema.json`` is the single definition of mlops.yaml —
every key has its description and default there, `mlops-ci validate` checks files against it
and loading fills its defaults in. A reference written by hand would drift from it; this MkDocs
hook (``hooks:`` in mkdocs.yml) renders the schema into ``config-reference.md`` in place of
``MARKER`` each time the site is built, so the page is the schema. ``tests/unit/test_docs.py``
checks that the page names every property path of the schema.

Paths are dotted; ``[]`` is an item of an array of objects (``gate.rules[].metric``) and
``<name>`` an entry of a map whose names are the user's (``deploy.<name>.target``).
Standard library only, so the test imports it without MkDocs.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

SCHEMA = Path(__file__).resolve().parents[2] / "mlops_ci" / "config" / "schema"
SCHEMA_FILE = SCHEMA / "mlops.schema.json"
PAGE = "config-reference.md"
HEADER = "| key | type | default | description |"
MARKER = "<!-- config-reference: generated from the schema by docs/hooks/config_reference.py -->"


class Key(NamedTuple):
    """One key of mlops.yaml: its dotted path, its schema node, and whether it is required."""

    path: str
    node: dict[str, Any]
    required: bool


def load_schema(path: Path = SCHEMA_FILE) -> dict[str, Any]:
    schema: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return schema


def keys(node: dict[str, Any], prefix: str = "") -> Iterator[Key]:
    """Every key below ``node``, each followed by the keys nested in it (depth first)."""
    required = set(node.get("required", []))
    for name, child in node.get("properties", {}).items():
        path = f"{prefix}.{name}" if prefix else name
        yield Key(path, child, name in required)
        yield from nested(child, path)


def nested(node: dict[str, Any], path: str) -> Iterator[Key]:
    """The keys inside one key's value: its properties, a map's entries, an array's items."""
    yield from keys(node, path)
    entry = node.get("additionalProperties")
    if isinstance(entry, dict) and "properties" in entry:
        yield Key(f"{path}.<name>", entry, False)
        yield from nested(entry, f"{path}.<name>")
    items = node.get("items")
    if isinstance(items, dict) and "properties" in items:
        yield from nested(items, f"{path}[]")


def type_of(node: dict[str, Any]) -> str:
    """``string``, ``integer or null``, ``array of string``, ``map of number``, ..."""
    kind = node.get("type")
    if kind is None:
        values = node.get("enum", [node["const"]] if "const" in node else [])
        kinds = sorted({_json_type(v) for v in values})
        return " or ".join(kinds) if kinds else "any"
    kinds = kind if isinstance(kind, list) else [kind]
    shown = []
    for k in kinds:
        if k == "array" and isinstance(node.get("items"), dict):
            shown.append("array of " + _plural(type_of(node["items"])))
        elif k == "object" and isinstance(node.get("additionalProperties"), dict):
            shown.append("map of " + _plural(type_of(node["additionalProperties"])))
        else:
            shown.append(k)
    return " or ".join(shown)


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    return {float: "number", str: "string", type(None): "null"}.get(type(value), "any")


def _plural(kind: str) -> str:
    return "objects" if kind == "object" else kind


def allowed(node: dict[str, Any]) -> str:
    """What the schema allows beyond the type: values, bounds, lengths, patterns."""
    parts = []
    if "enum" in node:
        parts.append(", ".join(_code(v) for v in node["enum"]))
    if "const" in node:
        parts.append(f"only {_code(node['const'])}")
    for word, sign in (
        ("minimum", "≥"),
        ("exclusiveMinimum", ">"),
        ("maximum", "≤"),
        ("exclusiveMaximum", "<"),
    ):
        if word in node:
            parts.append(f"{sign} {node[word]}")
    if "minItems" in node:
        parts.append(f"at least {node['minItems']} item(s)")
    if "maxItems" in node:
        parts.append(f"at most {node['maxItems']} items")
    if node.get("uniqueItems"):
        parts.append("no repeats")
    if "maxLength" in node:
        parts.append(f"at most {node['maxLength']} characters")
    if "pattern" in node:
        parts.append(node.get("x-pattern-message") or f"matches `{node['pattern']}`")
    names = node.get("propertyNames")
    if isinstance(names, dict) and "pattern" in names:
        parts.append("names: " + (names.get("x-pattern-message") or f"`{names['pattern']}`"))
    items = node.get("items")
    if isinstance(items, dict) and "properties" not in items and allowed(items):
        parts.append("each: " + allowed(items))
    return "; ".join(parts)


def default_of(key: Key) -> str:
    if "default" in key.node:
        return _code(key.node["default"])
    return "required" if key.required else "—"


def _code(value: Any) -> str:
    return f"`{json.dumps(value, ensure_ascii=False)}`"


def prose(text: str) -> str:
    """A description as table-cell markdown: HTML-escaped outside `code`, pipes escaped."""
    pieces = text.split("`")
    for i in range(0, len(pieces), 2):  # even pieces are outside backticks
        text = pieces[i].replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        pieces[i] = text.replace("*", "\\*").replace("|", "\\|")
    return "`".join(pieces).replace("\n", " ")


def row(key: Key) -> str:
    """One table row; what the key allows closes its description."""
    text = prose(key.node.get("description", ""))
    limits = allowed(key.node)
    if limits:
        text += f"<br>**Allowed:** {prose(limits)}"
    cells = [f"`{key.path}`", type_of(key.node), default_of(key), text]
    return "| " + " | ".join(cells) + " |"


def reference(schema: dict[str, Any]) -> str:
    """The page's body: per top-level key a section, a table of it and every key nested in it."""
    lines = []
    required = set(schema.get("required", []))
    for name, node in schema["properties"].items():
        top = Key(name, node, name in required)
        lines += [f"## `{name}`", ""]
        lines += [HEADER, "| --- | --- | --- | --- |"]
        lines += [row(k) for k in [top, *nested(node, name)]]
        lines.append("")
    return "\n".join(lines)


def on_page_markdown(markdown: str, page: Any, **kwargs: Any) -> str:
    """MkDocs hook: put the generated reference where the page holds ``MARKER``."""
    if page.file.src_uri != PAGE:
        return markdown
    if MARKER not in markdown:
        raise ValueError(f"docs/{PAGE} lost its marker {MARKER!r}")
    return markdown.replace(MARKER, reference(load_schema()))
