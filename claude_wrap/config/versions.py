"""The Claude Code releases claude-wrap is tested against, and how versions compare.

`TESTED` is the end-to-end version matrix, pinned here and nowhere else: tests/e2e runs every case
against each of these, and `claude-wrap doctor` says when the real binary is newer than the newest.
"""

from __future__ import annotations

TESTED = ("2.1.87", "2.1.197", "2.1.332", "2.1.337")


def parse(text: str) -> tuple[int, ...] | None:
    """`2.1.332` or `2.1.332 (Claude Code)` -> (2, 1, 332); None when it is no version."""
    words = text.split()
    if not words:
        return None
    parts = words[0].split(".")
    if not all(p.isdigit() for p in parts):
        return None
    return tuple(int(p) for p in parts)


def newest_tested() -> str:
    return max(TESTED, key=lambda v: parse(v) or ())
