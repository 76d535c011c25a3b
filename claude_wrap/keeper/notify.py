"""The keeper tells the user of trouble coming: the login's end within the window (once a day)
and a dead login (invalid_grant: only `claude /login` helps; once per dead login).

Where it tells: the desktop's notifications when a session is reachable (notify-send on Linux,
osascript on macOS), else the journal. For the journal, stderr when we run under systemd (its
JOURNAL_STREAM is set: the line lands in the journal under the keeper's own unit, no extra
process), else logger(1) (syslog, which the journal reads), else plain stderr.

What was told is remembered in claude-wrap's state folder (notified.json, 0600: config folders,
times and a date; never a token), so the same state is never told twice. A new login (another
refreshTokenExpiresAt) or a working login after a dead one starts afresh.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from typing import TYPE_CHECKING, Any

from claude_wrap import console
from claude_wrap.judging import loginend
from claude_wrap.storage import privatefile

if TYPE_CHECKING:
    from claude_wrap.config.settings import Settings

TITLE = "claude-wrap"


def channel(settings: Settings) -> str:
    """notify-send, osascript, stderr (under systemd) or logger; stderr when nothing else."""
    where = settings.search_path
    if sys.platform == "darwin" and shutil.which("osascript", path=where):
        return "osascript"
    if settings.desktop_session and shutil.which("notify-send", path=where):
        return "notify-send"
    if settings.under_journal:
        return "stderr"
    if shutil.which("logger", path=where):
        return "logger"
    return "stderr"


def _applescript(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def send(settings: Settings, body: str, *, urgent: bool) -> str:
    """Tell the user; returns the channel that took it."""
    how = channel(settings)
    argv: list[str] | None = None
    if how == "notify-send":
        urgency = "critical" if urgent else "normal"
        argv = ["notify-send", "--app-name=claude-wrap", "-u", urgency, TITLE, body]
    elif how == "osascript":
        script = f"display notification {_applescript(body)} with title {_applescript(TITLE)}"
        argv = ["osascript", "-e", script]
    elif how == "logger":
        argv = ["logger", "-t", "claude-wrap", "-p", "user.warning" if urgent else "user.notice",
                body]
    if argv is not None:
        try:
            done = subprocess.run(
                argv, env=settings.child_env(), capture_output=True, timeout=10, check=False
            )
            if done.returncode == 0:
                return how
        except (OSError, subprocess.TimeoutExpired):
            pass
    console.say(body)
    return "stderr"


def _load(path: str) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError):
        return {}  # none yet, or unreadable: at worst the user is told once more
    return data if isinstance(data, dict) else {}


def _save(path: str, data: dict[str, Any]) -> None:
    privatefile.replace(path, json.dumps(data, indent=1, sort_keys=True).encode())


def known_dead(settings: Settings, config_dir: str) -> bool:
    """Whether the keeper found this folder's login dead (invalid_grant) and no login since."""
    rec = _load(settings.notified_state).get(config_dir)
    return isinstance(rec, dict) and rec.get("dead") is True


def today(now_ms: int) -> str:
    return time.strftime("%Y-%m-%d", time.localtime(now_ms / 1000))


def consider(
    settings: Settings,
    config_dir: str,
    *,
    ends_at: int | None,
    dead: bool,
    now_ms: int | None = None,
) -> str | None:
    """After the keeper looked at one login: tell the user what is new, remember it. `dead`:
    the token endpoint answered invalid_grant; else the login works now (ends_at: its end).
    Returns what was told, or None."""
    now = int(time.time() * 1000) if now_ms is None else now_ms
    path = settings.notified_state
    data = _load(path)
    old = data.get(config_dir)
    rec: dict[str, Any] = dict(old) if isinstance(old, dict) else {}
    told = None
    if dead:
        if not rec.get("dead"):
            from claude_wrap.logfile import deaths  # noqa: PLC0415 - a dead login only

            death = deaths.last(settings, config_dir)  # why, as `status` says it (cause.py)
            told = (f"the login in {config_dir} is dead: {death.line}" if death is not None
                    else f"the login in {config_dir} is dead (the token server refused its "
                    "refresh token): run `claude /login`")
            send(settings, told, urgent=True)
            rec["dead"] = True
    else:
        if rec.get("dead") or rec.get("login_end") != ends_at:
            rec = {"login_end": ends_at}  # a new login, or one that works again: start afresh
        window_ms = settings.login_end_window_ms
        if ends_at is not None and loginend.within(ends_at, now, window_ms):
            day = today(now)
            if rec.get("day") != day:
                told = f"{config_dir}: {loginend.sentence(ends_at, now)}"
                send(settings, told, urgent=ends_at - now < loginend.DAY_MS)
                rec["day"] = day
    if rec != old:
        data[config_dir] = rec
        _save(path, data)
    return told
