"""The CLI reference's Default column without click's ``Sentinel.UNSET``.

Why: click 8.3 gives an option that has no default the sentinel ``UNSET`` instead of ``None``,
and mkdocs-click 0.9.0's table style prints it as is (mkdocs/mkdocs-click#95, not released
when this was written). This MkDocs hook (``hooks:`` in mkdocs.yml) wraps the one function that
writes an option's row, so such an option shows what ``--help`` means: ``False`` for a flag,
``required`` or ``—`` otherwise. Where the default is a real value, or once mkdocs-click
handles the sentinel itself, the row is left as mkdocs-click wrote it.
"""

from __future__ import annotations

from typing import Any

import click
from mkdocs_click import _docs

_row = _docs._format_table_option_row


def _unset(value: Any) -> bool:
    return type(value).__name__ == "Sentinel" and getattr(value, "name", "") == "UNSET"


def _option_row(option: click.Option) -> str:
    row: str = _row(option)
    if not _unset(option.default):
        return row
    shown = "`False`" if option.is_flag else ("required" if option.required else "—")
    return row.rsplit("|", 2)[0] + f"| {shown} |"


_docs._format_table_option_row = _option_row
