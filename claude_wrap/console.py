"""What claude-wrap says to the user: one line on stderr, prefixed with its name.

Only the entry point's caller decides when to speak; this is how. Nothing here is imported on
the healthy hot path: the first message is also the first import.
"""

from __future__ import annotations

import sys


def say(message: str) -> None:
    try:
        sys.stderr.write(f"claude-wrap: {message}\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        pass  # no stderr (closed by the caller): nothing to say it on
