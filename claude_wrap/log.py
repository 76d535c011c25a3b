"""The log file (loguru), set up on first use so that a healthy run never imports loguru.

Everything logged passes a filter that masks anything shaped like a token, so a slip elsewhere
cannot put a secret in the file. Bodies of requests and responses are never logged at all.
"""

from __future__ import annotations

import os
import re
import sys
from typing import TYPE_CHECKING, Any

from claude_wrap import paths

if TYPE_CHECKING:
    from collections.abc import Mapping

    from loguru import Logger

# Claude Code's tokens look like sk-ant-oat01-..., sk-ant-ort01-...; keep the last 4 characters.
TOKEN = re.compile(r"sk-ant-[A-Za-z0-9_\-]{4,}")
_logger: Logger | None = None


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


def logger(env: Mapping[str, str] = os.environ) -> Logger:
    global _logger  # noqa: PLW0603 - one logger per process, configured once
    if _logger is not None:
        return _logger
    from loguru import logger as base  # noqa: PLC0415 - off the hot path

    base.remove()
    log = base.patch(_patch)
    path = paths.log_file(env)
    try:
        folder = os.path.dirname(path)
        if folder:
            paths.make_private_dirs(folder)
        base.add(
            path,
            level="DEBUG",
            rotation="1 MB",
            retention=3,
            diagnose=False,
            backtrace=False,
            enqueue=False,
            format="{time:YYYY-MM-DD HH:mm:ss.SSS} {process} {level} {message}",
            # 0600 from birth, rotated files too (the opener is handed to open()).
            opener=lambda name, flags: os.open(name, flags, 0o600),
        )
    except OSError:
        pass  # no log file is no reason to stand between the user and claude
    if paths.debug(env):
        base.add(
            sys.stderr,
            level="DEBUG",
            diagnose=False,
            format="claude-wrap: {level}: {message}",
        )
    _logger = log
    return log
