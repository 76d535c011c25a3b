"""The one module that writes to the terminal: what claude-wrap says to the user on stderr (one
line, prefixed with its name), the spinner's frames, and the commands' output on stdout.

Only the entry point's caller decides when to speak; this is how. Nothing here is imported on
the healthy hot path: the shim's first message is also the first import, so this module imports
`sys` and nothing else. claude's own bytes, which the watchers relay (watch/pipes.py,
watch/interactive.py), are not ours to say and do not pass through here.
"""

from __future__ import annotations

import sys


def say(message: str) -> None:
    """One line of ours on stderr: `claude-wrap: message`."""
    line(f"claude-wrap: {message}")


def line(text: str) -> None:
    """One line on stderr as it is (a command that names itself, a debug line)."""
    write(f"{text}\n")


def write(text: str) -> None:
    """`text` on stderr as it is, at once (a spinner's frame, its erasing, a log sink's line).
    Nothing is raised when there is no stderr (closed by the caller): nothing to say it on."""
    try:
        sys.stderr.write(text)
        sys.stderr.flush()
    except (OSError, ValueError):
        pass


def stderr_is_terminal() -> bool:
    """Whether stderr is a terminal: only then is a spinner shown."""
    try:
        return bool(sys.stderr.isatty())
    except (AttributeError, ValueError, OSError):
        return False


def flush() -> None:
    """stdout and stderr written out now: before an exec replaces us, before a long wait."""
    sys.stdout.flush()
    sys.stderr.flush()


def out(text: str, *, flush: bool = False) -> None:
    """A command's output on stdout: `text` and a newline, as print() writes it (a closed stdout
    raises, as it did: the entry point reports it)."""
    sys.stdout.write(f"{text}\n")
    if flush:
        sys.stdout.flush()
