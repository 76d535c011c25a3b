"""A remembered verdict, so that a healthy run neither reads nor parses the credentials file.

Parsing JSON means importing `json`, and with it `re` and `enum`: about 12 ms on a small machine,
most of the shim's budget. The verdict is a pure function of the file's content and the clock, so
we remember "the file with this identity (device, inode, size, mtime, ctime) is fine until T".
Any write to the file, by anyone, changes its ctime, and the next run judges it afresh. The cache
holds no secret: a path, stat numbers, times and the guest file's line (which owner, if any).

`posix`, not `os`: the shim imports this module before its turn on the folder flock (fspath.py).
"""

from __future__ import annotations

from claude_wrap.config.fspath import file_identity
from claude_wrap.config.settings import Settings

FAR_MS = 3_600_000  # a login with no expiry is re-judged hourly
GUEST_PREFIX = "guest:"  # the cache's last line: the guest file's line, "" when none


def _key(cred: str, ident: tuple[int, ...], window_ms: int) -> str:
    return f"{cred}|{'|'.join(map(str, ident))}|{window_ms}"


def still_ok(cred: str, window_ms: int, now_ms: int, settings: Settings) -> bool:
    """True when the file is unchanged since it was judged fine and that verdict still holds."""
    return judged(cred, window_ms, now_ms, settings)[0]


def judged(
    cred: str, window_ms: int, now_ms: int, settings: Settings
) -> tuple[bool, int | None]:
    """(still_ok, the login's end in ms or None when unknown), from the cache alone. The login's
    end (refreshTokenExpiresAt) is kept here so that the shim and `status --short` can warn of it
    without parsing the file."""
    ident = file_identity(cred)
    if ident is None:
        return False, None
    try:
        with open(settings.verdict_cache, "rb") as f:
            data = f.read(8192).decode("utf-8", "replace")
    except OSError:
        return False, None
    key, _, rest = data.partition("\n")
    until, _, rest = rest.partition("\n")
    end, _, guest = rest.partition("\n")
    if key != _key(cred, ident, window_ms):
        return False, None
    try:
        if now_ms >= int(until):
            return False, None
        ends_at = int(end) if end else None
    except ValueError:
        return False, None
    if guest.startswith(GUEST_PREFIX):
        # The guest line as it was when the verdict was remembered: a healthy run need not
        # open the guest file to know whether to roll over (shim._rollover).
        settings.learn_stored_guest(guest[len(GUEST_PREFIX) :])
    return True, ends_at


def remember(  # noqa: PLR0917 - one line of the cache each
    settings: Settings,
    cred: str,
    ident: tuple[int, ...],
    expires_at: int | None,
    window_ms: int,
    now_ms: int,
    login_ends_at: int | None = None,
) -> None:
    until = now_ms + FAR_MS if expires_at is None else expires_at - window_ms
    from claude_wrap.storage import privatefile  # noqa: PLC0415 - only when judged afresh, off the hot path

    end = "" if login_ends_at is None else str(login_ends_at)
    guest = GUEST_PREFIX + settings.stored_guest
    # Only a cache: without it the next run parses the file again, nothing worse.
    privatefile.replace(
        settings.verdict_cache,
        f"{_key(cred, ident, window_ms)}\n{until}\n{end}\n{guest}".encode(),
    )
