"""A string holding what a terminal or a CI log would act on: ESC sequences, CR, a bidi
override, NUL and C1 controls."""

from __future__ import annotations

HOSTILE = "a\x1b[2J\x1b]0;pwned\x07b\rc\u202ed\x00e\x9bf"
