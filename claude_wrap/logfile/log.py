"""The log file (loguru), set up on first use so that a healthy run never imports loguru.

Everything logged passes a filter that masks anything shaped like a token, so a slip elsewhere
cannot put a secret in the file. Bodies of requests and responses are never logged at all.
"""

from __future__ import annotations

import os
import re
import sys
import threading
from typing import TYPE_CHECKING, Any

from claude_wrap.config import fspath
from claude_wrap.config.settings import Settings
from claude_wrap.findings import Finding, Level

if TYPE_CHECKING:
    from loguru import Logger

# Claude Code's tokens look like sk-ant-oat01-..., sk-ant-ort01-...; keep the last 4 characters.
TOKEN = re.compile(r"sk-ant-[A-Za-z0-9_\-]{4,}")
_logger: Logger | None = None
# What the logger was set up for (the log file, debug on stderr): another Settings that says
# otherwise sets it up again (one logger per process, but never the first caller's file for all).
_set_up_for: tuple[str, bool] | None = None
# One set-up at a time: a session's guard thread warms the log up (guard.warm_up) while the main
# thread may set it up too, and two set-ups would add the file twice (every line written twice).
_setting_up = threading.Lock()


def mask(text: str) -> str:
    return TOKEN.sub(lambda m: "sk-ant-…" + m.group(0)[-4:], text)


def _patch(record: Any) -> None:
    record["message"] = mask(record["message"])
    if record["exception"] is not None:
        # A traceback's text is rendered later from the exception itself: mask its message too.
        exc = record["exception"].value
        if exc is not None and TOKEN.search(str(exc)):
            record["exception"] = None
            record["message"] += " (exception text withheld: it held a token)"


def logger(settings: Settings) -> Logger:
    if _logger is not None and _set_up_for == (settings.log_file, settings.debug):
        return _logger
    with _setting_up:
        return _set_up(settings)


def _set_up(settings: Settings) -> Logger:
    global _logger, _set_up_for  # noqa: PLW0603 - one logger per process, set up per its settings
    wanted = (settings.log_file, settings.debug)
    if _logger is not None and _set_up_for == wanted:
        return _logger  # another thread set it up while we waited
    from loguru import logger as base  # noqa: PLC0415 - off the hot path

    base.remove()
    log = base.patch(_patch)
    path = settings.log_file
    try:
        folder = os.path.dirname(path)
        if folder:
            fspath.make_private_dirs(folder)
        base.add(
            path,
            level="DEBUG",
            rotation="1 MB",
            retention=3,
            diagnose=False,
            backtrace=False,
            enqueue=False,
            delay=True,  # no file until a line is written: a guard sets the log up in advance
            format="{time:YYYY-MM-DD HH:mm:ss.SSS} {process} {level} {message}",
            # 0600 from birth, rotated files too (the opener is handed to open()).
            opener=lambda name, flags: os.open(name, flags, 0o600),
        )
    except OSError:
        pass  # no log file is no reason to stand between the user and claude
    if settings.debug:
        from claude_wrap import console  # noqa: PLC0415 - debugging only

        base.add(
            console.write,
            level="DEBUG",
            diagnose=False,
            format="claude-wrap: {level}: {message}",
        )
    _logger = log
    _set_up_for = wanted
    return log


# Events: one line per thing `claude-wrap log` shows (refresh, repair, adopt, failure, ...) -----
# A line is `<time> <pid> EVENT event\t<kind>\t<role>\t<config dir>\t<detail>`, in the same file
# and the same leading format as loguru's lines, so that one reader (eventlog.py) reads both. It
# is appended with os.write, not through loguru: a herd of shims adopting one refresh must not
# pay loguru's import each (bench/run contention). O_APPEND keeps each line whole; loguru's
# rotation renames the file and the next event opens the new one by its name.
EVENT_PREFIX = "event\t"


class Event:
    """The kinds of event `claude-wrap log` shows, one line each (strings: see login.State)."""

    REFRESH = "refresh"
    REPAIR = "repair"
    ADOPT = "adopt"
    FAILURE = "failure"


_role: str | None = None


def set_role(role: str) -> None:
    """Which of our programs this process is (shim, keeper, refresh, status, ...), for `log`."""
    global _role  # noqa: PLW0603 - one role per process
    _role = role


def role() -> str:
    if _role is not None:
        return _role
    argv = sys.argv
    name = os.path.basename(argv[0]) if argv and argv[0] else ""
    if name == "claude" or argv[1:2] == ["run"]:
        return "shim"
    return name or "claude-wrap"


def event(kind: str, config_dir: str, detail: str, settings: Settings) -> None:
    """Log one event for `claude-wrap log`. Never raises: a log must not stop a refresh."""
    import time  # noqa: PLC0415 - builtin

    now = time.time()
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(now)) + f".{int(now % 1 * 1000):03d}"
    fields = (kind, role(), config_dir, detail)
    clean = [mask(str(x)).replace("\t", " ").replace("\n", " ") for x in fields]
    line = f"{stamp} {os.getpid()} EVENT {EVENT_PREFIX}{chr(9).join(clean)}\n"
    path = settings.log_file
    try:
        folder = os.path.dirname(path)
        if folder:
            fspath.make_private_dirs(folder)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, line.encode("utf-8", "replace"))
        finally:
            os.close(fd)
    except OSError:
        pass
    if settings.debug:
        from claude_wrap import console  # noqa: PLC0415 - debugging only

        console.say(f"INFO: event {kind}: {config_dir}: {mask(detail)}")


def check_log(settings: Settings) -> Finding:
    path = settings.log_file
    try:
        size = os.path.getsize(path)
    except OSError:
        return Finding("log", Level.OK, f"{path} (not written yet)", path=path)
    return Finding("log", Level.OK, f"{path} ({size} bytes)", path=path)
