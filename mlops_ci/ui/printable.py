"""Text fit for a terminal or a CI log, whatever user strings it holds.

Column names, params, branch names and error messages come from the pull request. Printed as
they are, an ESC starts a terminal escape sequence (recolour, retitle, hide what follows), a
CR rewrites the line a reader sees, a right-to-left override (U+202E) reverses it, and a line
that starts with ``::`` or holds ``##vso[`` is a GitHub or Azure Pipelines command. Control
and bidirectional-formatting characters are shown escaped (``\\x1b``, ``\\u202e``), and such
commands are broken, so what is printed is what a reader sees. And no credential is printed:
every URL loses its userinfo and secret query values, and the secret variables' values this
process holds are shown as ``***`` (``credentials.redact_text``), whoever wrote the text (an
error message of MLflow's, requests' or git's).
"""

from __future__ import annotations

import re

import click

from mlops_ci.credentials import redact_text

# C0 and C1 controls and DEL (but tab and newline, which `multi_line` keeps), and the
# Unicode bidirectional formatting characters (Trojan Source, CVE-2021-42574).
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_NEWLINES = re.compile(r"[\t\n]")
# A workflow command: GitHub reads `::name ...::` at a line's start, Azure `##vso[` anywhere.
_GITHUB_COMMAND = re.compile(r"^(\s*)::", re.MULTILINE)
_AZURE_COMMAND = re.compile(r"#(#vso\[)", re.IGNORECASE)


def _escaped(match: re.Match[str]) -> str:
    point = ord(match.group(0))
    return f"\\x{point:02x}" if point < 0x100 else f"\\u{point:04x}"


def escape_controls(text: str) -> str:
    """``text`` with every control and bidi character shown as its escape; tab and newline
    are kept for :func:`multi_line` and :func:`single_line` to decide."""
    return _CONTROL.sub(_escaped, text)


def multi_line(text: object) -> str:
    """Text for the terminal that may span lines: credentials masked, controls escaped, CI
    commands broken (a zero-width space after their first character)."""
    out = _GITHUB_COMMAND.sub("\\1:\u200b:", escape_controls(redact_text(str(text))))
    return _AZURE_COMMAND.sub("#\u200b\\1", out)


def single_line(text: object) -> str:
    """One line for the terminal (an error message): newlines and tabs shown escaped too
    (after the credentials are masked, so a secret holding one is still found)."""
    line = _NEWLINES.sub(lambda m: "\\n" if m.group(0) == "\n" else "\\t", redact_text(str(text)))
    return multi_line(line)


def echo(message: object = "", err: bool = False, nl: bool = True) -> None:
    """``click.echo`` for text that may hold user strings (column names, params, messages)."""
    click.echo(multi_line(message), err=err, nl=nl)
