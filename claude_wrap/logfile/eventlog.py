"""Reading the log file back for `claude-wrap log`: one human line per event.

Events are the lines log.event() writes (refresh, repair, adopt, failure, and whatever kinds are
added later); warnings and errors logged through loguru are shown too, so that a failure logged
before events existed, or by code that logs no event, is not hidden. An event kind we do not
know is shown by its name, never dropped.
"""

from __future__ import annotations

import glob
import os
import re
import time
from typing import TYPE_CHECKING, Any

from claude_wrap.logfile.log import EVENT_PREFIX, Event

if TYPE_CHECKING:
    from collections.abc import Iterator

# `<date> <time> <pid> <LEVEL> <message>`: loguru's format in log.py, and log.event()'s.
LINE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)(?:\.\d+)? (\d+) ([A-Z]+) (.*)$")
SHOWN_LEVELS = ("WARNING", "ERROR", "CRITICAL")
WORDS = {
    Event.REFRESH: "refreshed",
    Event.REPAIR: "repaired",
    Event.ADOPT: "adopted",
    Event.FAILURE: "FAILED",
}


class Reader:
    """Turns log lines into human lines. A warning that only repeats the event its process just
    logged (the shim's "pre-flight: ..." after a failure event) is not shown twice."""

    def __init__(self, home: str = "") -> None:
        self.home = home
        self.last: tuple[str, str] = ("", "")  # (pid, detail) of the last event

    def human(self, raw: str) -> str | None:
        """One human line for a log line, or None when it is not one `log` shows."""
        m = LINE.match(raw.rstrip("\n"))
        if m is None:
            return None
        when, pid, level, message = m.groups()
        if level == "EVENT" and message.startswith(EVENT_PREFIX):
            parts = message[len(EVENT_PREFIX) :].split("\t")
            parts += [""] * (4 - len(parts))
            kind, role, cfg, detail = parts[0], parts[1], parts[2], "\t".join(parts[3:])
            self.last = (pid, detail)
            what = WORDS.get(kind, kind)  # a kind added later: its own name
            where = _short(cfg, self.home)
            return f"{when}  {where}  {what}: {detail}  (pid {pid}, {role or '?'})"
        if level in SHOWN_LEVELS:
            if self.last[0] == pid and self.last[1] and message.endswith(self.last[1]):
                return None
            return f"{when}  -  {level.lower()}: {message}  (pid {pid})"
        return None


def human(raw: str, home: str = "") -> str | None:
    return Reader(home).human(raw)


def _short(path: str, home: str) -> str:
    if home and (path == home or path.startswith(home.rstrip("/") + "/")):
        return "~" + path[len(home.rstrip("/")) :]
    return path or "-"


def files(path: str) -> list[str]:
    """The rotated files (loguru: name.<date>.log), oldest first, then the current one."""
    root, ext = os.path.splitext(path)
    old = [p for p in glob.glob(glob.escape(root) + ".*" + ext) if p != path]
    old.sort(key=lambda p: (os.path.getmtime(p), p))
    return [*old, path] if os.path.exists(path) else old


def last(path: str, n: int, home: str = "") -> list[str]:
    shown: list[str] = []
    reader = Reader(home)
    for name in files(path):
        try:
            with open(name, encoding="utf-8", errors="replace") as f:
                for raw in f:
                    line = reader.human(raw)
                    if line is not None:
                        shown.append(line)
        except OSError:
            continue
        shown = shown[-n:] if n > 0 else []
    return shown


def follow(path: str, home: str = "", pause_s: float = 0.25) -> Iterator[str]:
    """Lines added after now, like `tail -F`: a rotated or truncated file is reopened from its
    start; a missing one is waited for."""
    f = _open(path, at_end=True)
    reader = Reader(home)
    partial = ""
    while True:
        chunk = f.read() if f is not None else ""
        if chunk:
            partial += chunk
            *whole, partial = partial.split("\n")
            for raw in whole:
                line = reader.human(raw)
                if line is not None:
                    yield line
            continue
        time.sleep(pause_s)
        try:
            st = os.stat(path)
        except OSError:
            continue  # rotated away, the new file not made yet
        if f is None or os.fstat(f.fileno()).st_ino != st.st_ino or st.st_size < f.tell():
            if f is not None:
                rest = f.read()  # what was written to the old file before it was renamed
                for raw in (partial + rest).split("\n"):
                    line = reader.human(raw)
                    if line is not None:
                        yield line
                partial = ""
                f.close()
            f = _open(path, at_end=False)


def _open(path: str, *, at_end: bool) -> Any:
    try:
        f = open(path, encoding="utf-8", errors="replace")  # noqa: SIM115 - kept open to follow
    except OSError:
        return None
    if at_end:
        f.seek(0, os.SEEK_END)
    return f
