"""The login's hard end (refreshTokenExpiresAt), in words: for status, doctor, the keeper and
the shim's warning (one sentence for all of them).

A refresh renews the access token, never the login itself: about a month after `/login` the
refresh token stops working and only `claude /login` helps. Logins without the field say nothing.

`time`, not `datetime`: the shim says the sentence, and imports nothing dear.
"""

from __future__ import annotations

import time

DAY_MS = 86_400_000


def when(ends_at: int) -> str:
    """The local date and time, to the minute."""
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(ends_at / 1000))


def left(ends_at: int, now_ms: int) -> str:
    """'2 days', '5h03m', '12m'; for a time still to come."""
    ms = max(0, ends_at - now_ms)
    days = ms // DAY_MS
    if days >= 2:
        return f"{days} days"
    h, m = divmod(ms // 60_000, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m"


def within(ends_at: int | None, now_ms: int, window_ms: int) -> bool:
    return ends_at is not None and ends_at - now_ms <= window_ms


def sentence(ends_at: int, now_ms: int) -> str:
    if ends_at <= now_ms:
        return f"login ended {when(ends_at)}: run `claude /login` to log in again"
    soon = f"login ends in {left(ends_at, now_ms)}, {when(ends_at)}"
    return f"{soon}: run `claude /login` before then"


def short(ends_at: int, now_ms: int) -> str:
    """A few characters for a prompt: '2d', '5h', '12m', 'end'."""
    ms = ends_at - now_ms
    if ms <= 0:
        return "end"
    if ms >= DAY_MS:
        return f"{ms // DAY_MS}d"
    if ms >= 3_600_000:
        return f"{ms // 3_600_000}h"
    return f"{max(1, ms // 60_000)}m"
