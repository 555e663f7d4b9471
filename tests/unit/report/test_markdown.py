"""The Markdown helpers hold any string: code, text, a table cell, a mermaid label."""

from __future__ import annotations

from tests.support.gfm import rendered


def test_markdown_helpers_hold_any_string() -> None:
    from mlops_ci.report import markdown as md

    assert rendered(md.code("a``b")).strip() == "<p><code>a``b</code></p>"
    assert rendered(md.text("*b* [l](u) <i>")).strip() == "<p>*b* [l](u) &lt;i&gt;</p>"
    cell = md.cell(md.code("a|b"))
    assert "<td><code>a|b</code></td>" in rendered(f"| h |\n|---|\n| {cell} |")
    assert md.mermaid('x"] ```') == "x_] ___"
    assert md.mermaid("größe: (a|b) %% #quot; <b>") == "größe: (a|b) __ _quot; _b_"
    assert md.text("f1_macro _x_") == "f1_macro \\_x\\_"
