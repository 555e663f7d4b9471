"""The documentation holds together: a short README, links that lead somewhere, a config
reference that names every key of the schema (the strict build of the site, a process, is
tests/integration/test_docs.py)."""

from __future__ import annotations

import importlib.util
import json
import re
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = ROOT / "mlops_ci" / "config" / "schema" / "mlops.schema.json"
LINK = re.compile(r"\]\(([^()\s]+)(?:\s+\"[^\"]*\")?\)")
FENCE = re.compile(r"^```.*?^```", re.M | re.S)
CODE = re.compile(r"`[^`\n]*`")


def pages() -> list[Path]:
    readmes = [ROOT / "README.md", ROOT / "benchmarks" / "README.md"]
    return readmes + sorted(ROOT.glob("docs/**/*.md"))


def prose(path: Path) -> str:
    """The page without its code blocks and code spans (whose brackets are not links)."""
    return CODE.sub("", FENCE.sub("", path.read_text(encoding="utf-8")))


def relative_links(path: Path) -> Iterator[str]:
    for target in LINK.findall(prose(path)):
        if not re.match(r"^[a-z][a-z0-9+.-]*:", target) and not target.startswith("#"):
            yield target


def anchors(path: Path) -> set[str]:
    """The ids of a page's headings: an explicit ``{#id}``, else the heading as GitHub and
    MkDocs slug it (lower case, punctuation dropped, spaces to hyphens). A page that includes
    another (``--8<-- "benchmarks/README.md"``) has its headings too."""
    text = FENCE.sub("", path.read_text(encoding="utf-8"))
    found = set()
    for included in re.findall(r'^--8<-- "([^"]+)"$', text, re.M):
        found |= anchors(ROOT / included)
    for heading in re.findall(r"^#{1,6} (.+)$", text, re.M):
        explicit = re.search(r"\{#([\w-]+)\}\s*$", heading)
        if explicit:
            found.add(explicit.group(1))
        else:
            found.add(re.sub(r"[^\w\- ]", "", heading.lower()).strip().replace(" ", "-"))
    return found


def test_the_readme_is_under_250_lines() -> None:
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) < 250, f"README.md has {len(lines)} lines: move the detail into docs/"


def test_the_readme_keeps_the_two_commands_ci_runs() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "```bash\npip install . && mlops-ci demo\n```" in readme
    assert "```bash\npip install -e '.[test]' && pytest\n```" in readme


def test_every_relative_link_points_at_a_file_that_exists() -> None:
    broken = []
    for page in pages():
        for target in relative_links(page):
            file, _, anchor = target.partition("#")
            path = (page.parent / file).resolve()
            if not path.exists():
                broken.append(f"{page.relative_to(ROOT)}: {target} (no such file)")
            elif anchor and path.suffix == ".md" and anchor not in anchors(path):
                broken.append(f"{page.relative_to(ROOT)}: {target} (no such heading)")
    assert not broken, "\n".join(broken)


def generator() -> ModuleType:
    path = ROOT / "docs" / "hooks" / "config_reference.py"
    spec = importlib.util.spec_from_file_location("config_reference", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def schema_paths(node: dict[str, Any], prefix: str = "") -> Iterator[str]:
    """Every property path of the schema, walked here apart from the generator."""
    for name, child in node.get("properties", {}).items():
        path = f"{prefix}.{name}" if prefix else name
        yield path
        yield from schema_paths(child, path)
        entry = child.get("additionalProperties")
        if isinstance(entry, dict) and "properties" in entry:
            yield f"{path}.<name>"
            yield from schema_paths(entry, f"{path}.<name>")
        items = child.get("items")
        if isinstance(items, dict):
            yield from schema_paths(items, f"{path}[]")


def test_the_config_reference_names_every_key_of_the_schema() -> None:
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    expected = list(schema_paths(schema))
    page = generator().reference(schema)
    named = re.findall(r"^\| `([^`]+)` \|", page, re.M)
    assert sorted(named) == sorted(expected)
    assert len(expected) > 100  # the walk found the nested keys, not only the top ones


def test_the_config_reference_page_holds_the_generators_marker() -> None:
    module = generator()
    assert module.MARKER in (ROOT / "docs" / module.PAGE).read_text(encoding="utf-8")
