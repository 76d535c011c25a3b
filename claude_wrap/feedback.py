"""A spinner on stderr while a refresh takes long, so a terminal user knows why claude waits.

Nothing at all when stderr is not a terminal: pipelines and editors see the same bytes as without
us. The line is erased afterwards, leaving the terminal as it was.
"""

from __future__ import annotations

import sys
import threading
from typing import TextIO

FRAMES = "|/-\\"
TEXT = "claude-wrap: refreshing Claude login... "


class Spinner:
    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def _tty(self) -> bool:
        try:
            return bool(self.stream.isatty())
        except (AttributeError, ValueError, OSError):
            return False

    def start(self) -> None:
        with self._lock:
            if self._thread is not None or self._stop.is_set() or not self._tty():
                return
            self._thread = threading.Thread(target=self._spin, daemon=True)
            self._thread.start()

    def _write(self, text: str) -> None:
        try:
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError):
            pass

    def _spin(self) -> None:
        i = 0
        while not self._stop.is_set():
            self._write(f"\r{TEXT}{FRAMES[i % len(FRAMES)]}")
            i += 1
            self._stop.wait(0.1)

    def stop(self) -> None:
        with self._lock:
            self._stop.set()
            thread = self._thread
        if thread is not None:
            thread.join()
            self._write("\r\033[K")  # erase the line

    def __enter__(self) -> Spinner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
