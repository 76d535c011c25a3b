"""A spinner on stderr while a refresh takes long, so a terminal user knows why claude waits.

Nothing at all when stderr is not a terminal: pipelines and editors see the same bytes as without
us. The line is erased afterwards, leaving the terminal as it was. Written through console.py.
"""

from __future__ import annotations

import threading

from claude_wrap import console

FRAMES = "|/-\\"
TEXT = "claude-wrap: refreshing Claude login... "


class Spinner:
    def __init__(self) -> None:
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def start(self) -> None:
        with self._lock:
            if self._thread is not None or self._stop.is_set() or not console.stderr_is_terminal():
                return
            self._thread = threading.Thread(target=self._spin, daemon=True)
            self._thread.start()

    def _spin(self) -> None:
        i = 0
        while not self._stop.is_set():
            console.write(f"\r{TEXT}{FRAMES[i % len(FRAMES)]}")
            i += 1
            self._stop.wait(0.1)

    def stop(self) -> None:
        with self._lock:
            self._stop.set()
            thread = self._thread
        if thread is not None:
            thread.join()
            console.write("\r\033[K")  # erase the line

    def __enter__(self) -> Spinner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
