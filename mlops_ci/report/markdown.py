"""Markdown that holds any string safely: the report embeds branch names, actors, column and
metric names, file names and free text that come from a pull request, so none of them may open
a link or an image (an autolink such as ``https://…``, ``www.…`` or ``a@b.c`` included), close
a code span, split a table or inject HTML.

Follows GitHub Flavored Markdown: backslash escapes for ASCII punctuation, code spans fenced by
a backtick run longer than any inside, and ``\\|`` for a pipe in a table cell (which GFM honours
even inside a code span).
"""

from __future__ import annotations

import re

from mlops_ci.ui.printable import escape_controls

# The ASCII punctuation that can start markup mid-line (emphasis, code, links, images, HTML,
# tables, strikethrough, entities) or a GitHub reference (@mention, #issue); GFM lets a
# backslash escape each of them. An underscore inside a word (f1_macro) emphasises nothing.
_SPECIAL = re.compile(r"([\\`*\[\]!|<>~&@#]|(?<![A-Za-z0-9])_|_(?![A-Za-z0-9]))")
_WHITESPACE = re.compile(r"\s+")
# Where GFM's autolink extension would turn plain text into a link: a scheme's "://"
# (https://x), "www." and an e-mail's "@" (mailto:, xmpp: included). A word joiner (U+2060,
# invisible) there is enough for cmark-gfm to see no link.
_AUTOLINK = re.compile(r"(?<=[A-Za-z0-9+.-]:)(?=//)|(?<=\bwww)(?=\.)|(?=@)", re.IGNORECASE)
WORD_JOINER = "\u2060"
# GitHub refuses comment bodies over 65,536 characters (ci/github posts within it; the report
# is built to fit it).
GITHUB_COMMENT_LIMIT = 65_536


def one_line(text: object) -> str:
    """The value as a single line (newlines and tabs become spaces, control and bidi
    characters are shown escaped)."""
    return escape_controls(_WHITESPACE.sub(" ", str(text)).strip())


def text(value: object) -> str:
    """Plain text: no markup, link, autolink, image or HTML it contains takes effect."""
    return _SPECIAL.sub(r"\\\1", _AUTOLINK.sub(WORD_JOINER, one_line(value)))


def code(value: object) -> str:
    """An inline code span showing the value verbatim (backticks inside included)."""
    body = one_line(value)
    longest = max((len(run) for run in re.findall(r"`+", body)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if body.startswith("`") or body.endswith("`") or not body else ""
    return f"{fence}{pad}{body}{pad}{fence}"


def mermaid(name: object, width: int = 80) -> str:
    """Text inside a quoted mermaid string (a chart's title, axis label or category): nothing
    that could end the string or the fence (``"``, a backtick), start a comment (``%%``) or an
    entity (``#quot;``), or be taken for HTML; at most ``width`` characters."""
    text = re.sub(r'["`%#<>\\]', "_", one_line(name))
    return text if len(text) <= width else text[: width - 1] + "…"


def cell(markdown: str) -> str:
    """Already-safe markdown made fit for a table cell: its pipes escaped."""
    return re.sub(r"(?<!\\)\|", r"\\|", markdown)


def close_open_blocks(markdown: str) -> str:
    """What must follow a cut so that the rest renders as markdown again: the closing fence of
    a code block left open and ``</details>`` for each one left open."""
    closing = []
    fence: str | None = None
    details = 0
    for line in markdown.splitlines():
        stripped = line.strip()
        match = re.match(r"^(`{3,}|~{3,})", stripped)
        if fence is None and match:
            fence = match.group(1)
        elif (
            fence is not None
            and stripped.startswith(fence[0] * len(fence))
            and not stripped[len(fence) :].strip(fence[0])
        ):
            fence = None
        elif fence is None:
            details += len(re.findall(r"<details\b", line, re.I))
            details -= len(re.findall(r"</details\s*>", line, re.I))
    if fence is not None:
        closing.append(fence)
    elif markdown.rfind("<!--") > markdown.rfind("-->"):
        closing.append("-->")  # an HTML comment left open would hide all that follows
    closing += ["</details>"] * max(details, 0)
    return "\n".join(closing)


def fit(body: str, limit: int, marker: str) -> str:
    """``body`` as a comment of at most ``limit`` characters that still ends with ``marker``:
    cut at a line end, what the cut left open closed, and a note saying where the rest is."""
    if len(body) <= limit:
        return body
    note = (
        f"\n\n> ✂️ Report cut to fit the {limit:,}-character limit of a comment; the full "
        f"report is `.mlops/report.md` in this job's artifacts.\n\n{marker}\n"
    )
    keep = body.replace(marker, "")[: max(0, limit - len(note))]
    for _ in range(8):  # each pass only shortens what is kept
        keep = keep[: keep.rfind("\n")] if "\n" in keep else keep
        closing = close_open_blocks(keep)
        out = keep + ("\n" + closing if closing else "") + note
        if len(out) <= limit:
            return out
        keep = keep[: len(keep) - (len(out) - limit)]
    return note[-limit:]
