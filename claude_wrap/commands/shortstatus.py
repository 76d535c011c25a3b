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

import os

from claude_wrap import console
from claude_wrap.config import paths
from claude_wrap.shim import fastpath

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping


def _word(ends_at: int | None, now_ms: int, env: Mapping[str, str]) -> str:
    if ends_at is not None and ends_at - now_ms <= int(paths.login_end_window(env) * 1000):
        from claude_wrap.judging import loginend  # noqa: PLC0415 - only within the window

        return loginend.short(ends_at, now_ms)
    return "ok"


def compute(env: Mapping[str, str] = os.environ) -> str:
    import time  # noqa: PLC0415 - builtin, cheap

    now = int(time.time() * 1000)
    try:
        window_ms = int(paths.refresh_window(env) * 1000)
        if paths.storage_kind(env) == "file":
            fine, ends_at = fastpath.judged(paths.credentials_file(env), window_ms, now, env)
            if fine:
                return _word(ends_at, now, env)
        return _judge(env, window_ms, now)
    except Exception:  # noqa: BLE001 - a prompt must never show a traceback
        return "?"


def _judge(env: Mapping[str, str], window_ms: int, now: int) -> str:
    from claude_wrap.judging import login  # noqa: PLC0415 - cache miss only
    from claude_wrap.refresh import refresher  # noqa: PLC0415 - cache miss only
    from claude_wrap.storage import backends  # noqa: PLC0415 - cache miss only

    # Remembered (the verdict cache), as the shim's path does: a prompt asks every few seconds,
    # and the next call then reads the cache instead of parsing the file.
    _, verdict = refresher.look(backends.open_storage(env), window_ms, now)
    if verdict.state == login.State.OK:
        return _word(verdict.login_ends_at, now, env)
    if verdict.login_ends_at is not None and verdict.login_ends_at <= now:
        return "end"
    if verdict.state in login.REFRESHABLE:
        from claude_wrap.keeper import notify  # noqa: PLC0415

        # The keeper met invalid_grant for it: no refresh will help, only /login.
        return "login" if notify.known_dead(env, paths.config_dir(env)) else "exp"
    if verdict.state == login.State.MALFORMED:
        return "bad"
    return "login"


def main(env: Mapping[str, str] = os.environ) -> int:
    try:
        console.out(compute(env), flush=True)
    except (OSError, ValueError):
        return 1
    return 0
