"""The guard of a long session: while it runs, another program's change to the stored login is
seen within milliseconds (filewatch: inotify, kqueue, else a poll) and handed to `on_change`,
which judges it and repairs it if need be, before claude's next request meets it. A login with
no file to watch (the Keychain) is polled: its identity, every period.

Only sessions that stay open pay for it: TUI sessions (interactive.py) and headless ones fed
stream-json on stdin (relay.py), as editors and SDKs run for hours. A one-shot `claude -p`
never starts it. CLAUDE_WRAP_GUARD_PERIOD=0 turns it off; it is the poll's period where the
kernel cannot tell us.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING

from claude_wrap.config.settings import Settings
from claude_wrap.refresh import recover
from claude_wrap.storage import backends
from claude_wrap.watch import filewatch

if TYPE_CHECKING:
    from collections.abc import Callable

    from claude_wrap.storage.store import Storage

# The warm-up waits this long into the session: at its very start, its imports (loguru: ~57 ms of
# CPU) and the GIL they hold compete with claude's own start and the relay's first exchange, and a
# client's first answer came later by about that much (docs/performance.md, bench/run client). A
# change to the login before then is repaired cold: as right, some 0.4 s slower.
WARM_AFTER_S = 3.0


class Guard:
    """Calls `on_change(identity)` in its own thread for each change of the login's identity
    (the storage layer's, as backends.identity gives it). `on_change` runs in the guard's
    thread; changes that happen meanwhile are seen after it."""

    def __init__(
        self,
        settings: Settings,
        on_change: Callable[[tuple[int, ...] | None], None],
        period_s: float,
    ) -> None:
        self.settings = settings
        self.on_change = on_change
        self.period = period_s
        self.watcher: filewatch.Watcher | None = None
        self.storage: Storage | None = None
        self._thread = threading.Thread(target=self._run, name="claude-wrap-guard", daemon=True)

    def __enter__(self) -> Guard:
        if self.period > 0:
            try:
                self.storage = backends.open_storage(self.settings)
            except ValueError:  # a bad setting: the pre-flight has said so; nothing to guard
                return self
            files = self.storage.watched_files()
            try:
                kind = self.settings.watch_kind
                self.watcher = filewatch.open_watcher(files, self.period, kind)
            except (OSError, ValueError):  # a bad CLAUDE_WRAP_NOTIFY must not end the session
                self.watcher = filewatch.Watcher(files, self.period)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.watcher is not None:
            self.watcher.interrupt()
        if self._thread.is_alive():
            self._thread.join()
        if self.watcher is not None:
            self.watcher.close()

    def _run(self) -> None:
        watcher, storage = self.watcher, self.storage
        assert watcher is not None
        assert storage is not None
        # No file to be told about (the Keychain): wake each period and compare identities.
        timeout = None if watcher.files else self.period
        last = storage.identity()
        warm_by: float | None = time.monotonic() + WARM_AFTER_S
        while not watcher.interrupted:
            wait = timeout
            if warm_by is not None:
                left = warm_by - time.monotonic()
                if left <= 0:
                    warm_up(self.settings)
                    warm_by = None
                else:
                    wait = left if wait is None else min(wait, left)
            watcher.wait(wait)
            ident = storage.identity()
            if ident == last or watcher.interrupted:
                continue
            last = ident
            try:
                self.on_change(ident)
            except Exception:  # noqa: BLE001, S110 - the guard must never end the session
                pass


def warm_up(settings: Settings) -> None:
    """Import what a repair needs now, in the guard's thread, while nothing is wrong, and set the
    log up: the first repair of a session then takes milliseconds. Measured on a stripped login
    with a good token (recover.heal, in-process): 62 ms when only log, refresher and restore were
    imported here (loguru, renewal and the log's sink were still loaded by the repair itself, the
    window in which claude's next read could still meet the stripped file), 4.7 ms with them
    (410 ms before any warm-up). Only sessions that stay open get here."""
    from claude_wrap.config import sitepath  # noqa: PLC0415

    sitepath.enable_site()
    try:
        from claude_wrap.logfile import log  # noqa: PLC0415
        from claude_wrap.refresh import refresher, renewal, restore  # noqa: F401, PLC0415
    except ImportError:
        return
    log.logger(settings)  # the sink opens its file on the first line only (delay): nothing written


def heal_inline(settings: Settings) -> Callable[[tuple[int, ...] | None], None]:
    """on_change for a headless session: judge and repair in the guard's own thread."""

    def on_change(_ident: tuple[int, ...] | None) -> None:
        recover.heal(settings)

    return on_change
