"""While a session runs on a guest, pull a new token before the running claude's is due, so that
claude re-reads the changed file (docs/protocol.md section 5) and rolls over by itself.

On the hot path of every healthy guest run, so it imports nothing heavy: a `_thread` (builtin,
no `threading` import), one os.stat and one small read of the verdict cache per period; guest.py
(json, subprocess, ssh) only once the token is due.
"""

from __future__ import annotations

import _thread
import time

from claude_wrap.storage import fastpath

TYPE_CHECKING = False
if TYPE_CHECKING:
    from claude_wrap.config.settings import Settings


class Rollover:
    def __init__(self, settings: Settings, owner: str, period: float) -> None:
        self.settings = settings
        self.owner = owner
        self.period = period
        self.stopped = False
        self._said = False

    def __enter__(self) -> Rollover:
        if self.period > 0:
            _thread.start_new_thread(self._run, ())
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopped = True  # the thread ends at its next look, or with the process

    def _run(self) -> None:
        cred = self.settings.credentials_file
        window_ms = self.settings.refresh_window_ms
        while True:
            time.sleep(self.period)
            if self.stopped:
                return
            if fastpath.still_ok(cred, window_ms, int(time.time() * 1000), self.settings):
                continue
            self.pull()

    def pull(self) -> None:
        try:
            from claude_wrap.config import sitepath  # noqa: PLC0415 - only when due
            from claude_wrap.guests import guest  # noqa: PLC0415 - only when due

            sitepath.enable_site()
            guest.ensure_fresh(self.settings, self.owner)
            self._said = False
        except Exception as exc:  # noqa: BLE001 - the session goes on; the next period retries
            from claude_wrap.errors import WrapError  # noqa: PLC0415

            if isinstance(exc, WrapError) and not self._said:  # one line per outage
                from claude_wrap import console  # noqa: PLC0415

                console.say(f"{exc} (the session goes on)")
                self._said = True
