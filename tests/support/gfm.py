"""Markdown rendered as GitHub renders it (cmark-gfm)."""

from __future__ import annotations


def rendered(markdown: str) -> str:
    """HTML as GitHub's renderer makes it: cmark-gfm with its extensions (tables,
    strikethrough, autolinks, tag filter), raw HTML let through so nothing injected hides."""
    import cmarkgfm
    from cmarkgfm.cmark import Options

    return str(
        cmarkgfm.github_flavored_markdown_to_html(markdown, options=Options.CMARK_OPT_UNSAFE)
    )
