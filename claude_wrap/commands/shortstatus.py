"""`claude-wrap status --short`: a few characters for a shell prompt or a status bar.

A prompt runs it before every command line, so a healthy login is answered from the verdict
cache (fastpath.py) alone: no JSON parse, no network, nothing imported beyond `os` and our light
modules. Only when the cache cannot answer is the login judged (which refills the cache).

  ok      the login is fine
  2d 5h   fine, but the login itself ends in that long (within CLAUDE_WRAP_LOGIN_END_WINDOW)
  end     the login has ended (refreshTokenExpiresAt passed): run `claude /login`
  exp     the access token is expired or due: a refresh (any claude through the shim) renews it
  login   no usable login and no refresh can make one (logged out, or the keeper met
          invalid_grant for it): run `claude /login`
  bad     the credentials file cannot be read as a login
  ?       the login could not be looked at (Keychain locked, bad setting)
"""

from __future__ import annotations

from claude_wrap import console
from claude_wrap.config.settings import StorageKind
from claude_wrap.storage import fastpath

TYPE_CHECKING = False
if TYPE_CHECKING:
    from claude_wrap.config.settings import Settings


def _word(ends_at: int | None, now_ms: int, settings: Settings) -> str:
    if ends_at is not None and ends_at - now_ms <= settings.login_end_window_ms:
        from claude_wrap.judging import loginend  # noqa: PLC0415 - only within the window

        return loginend.short(ends_at, now_ms)
    return "ok"


def compute(settings: Settings) -> str:
    import time  # noqa: PLC0415 - builtin, cheap

    now = int(time.time() * 1000)
    try:
        window_ms = settings.refresh_window_ms
        if settings.storage_kind == StorageKind.FILE:
            fine, ends_at = fastpath.judged(settings.credentials_file, window_ms, now, settings)
            if fine:
                return _word(ends_at, now, settings)
        return _judge(settings, window_ms, now)
    except Exception:  # noqa: BLE001 - a prompt must never show a traceback
        return "?"


def _judge(settings: Settings, window_ms: int, now: int) -> str:
    from claude_wrap.judging import login  # noqa: PLC0415 - cache miss only
    from claude_wrap.refresh import refresher  # noqa: PLC0415 - cache miss only
    from claude_wrap.storage import backends  # noqa: PLC0415 - cache miss only

    # Remembered (the verdict cache), as the shim's path does: a prompt asks every few seconds,
    # and the next call then reads the cache instead of parsing the file.
    snap, verdict = refresher.look(settings, backends.open_storage(settings), window_ms, now)
    if verdict.state == login.State.OK:
        return _word(verdict.login_ends_at, now, settings)
    if verdict.login_ends_at is not None and verdict.login_ends_at <= now:
        return "end"
    if verdict.state in login.REFRESHABLE:
        from claude_wrap.keeper import notify  # noqa: PLC0415
        from claude_wrap.logfile import deaths  # noqa: PLC0415

        # The keeper, or any refresh of ours, met invalid_grant for it: only /login helps.
        dead = notify.known_dead(settings, settings.config_dir) or (
            snap is not None
            and deaths.explain(settings, settings.config_dir, snap.doc, verdict, now) is not None
        )
        return "login" if dead else "exp"
    if verdict.state == login.State.MALFORMED:
        return "bad"
    return "login"


def main(settings: Settings) -> int:
    try:
        console.out(compute(settings), flush=True)
    except (OSError, ValueError):
        return 1
    return 0
