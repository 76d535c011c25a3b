"""Local repair: put back what another tool stripped from a login whose access token is still
good, without a token request (issue 14).

Third-party refreshers rewrite the file with only accessToken, refreshToken and expiresAt:
Claude Code then counts the login as logged out (it gates on `scopes`), though the token works.
Spending the refresh token to fix that costs a round trip and one more chance to collide with
that tool, which takes no lock. Here the remembered scope set and fields (memory.py) are written
back under Claude Code's storage-write lock; the tokens stay exactly as they are, and the write
happens only if the file still holds the very tokens that were judged.

A login claude-wrap has never seen (no memory, or the memory of another account) gets the
scopes the Claude Code release in use asks for in its own refresh (binary.refresh_scopes): that
is what the release would store after its next refresh, and the next refresh asks for the union
of the stored scopes and those, and stores the server's answer (issue 28). Scopes the file still
has are kept beside them: never fewer.

A token that is due (inside the refresh window, or expired) is refreshed instead: that is a
refresh's job anyway, and the server's answer then sets the scopes.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

from claude_wrap.config.settings import Settings, write_lock_dir
from claude_wrap.errors import CredentialsError
from claude_wrap.judging import login
from claude_wrap.locks import lock
from claude_wrap.refresh import binary
from claude_wrap.storage import memory

if TYPE_CHECKING:
    from collections.abc import Callable

    from claude_wrap.storage.store import Snapshot, Storage

OWNED = ("accessToken", "refreshToken", "expiresAt", "scopes")


def fill(
    oauth: dict[str, Any],
    remembered: memory.Remembered | None,
    *,
    restore_scopes: bool,
    asked: Callable[[], list[str]] | None = None,
) -> tuple[dict[str, Any], list[str]]:
    """`oauth` with the remembered fields (and, if asked, scopes) put where the file has none:
    (the new section, the names restored). Present values are never overwritten, and scopes the
    file holds are kept. Scopes come from the memory, else from `asked` (the scopes the release
    in use asks for), called only when scopes are missing."""
    restored = []
    out = dict(oauth)
    scopes = out.get("scopes")
    whole = isinstance(scopes, list) and login.INFERENCE_SCOPE in scopes
    if restore_scopes and not whole:
        had = [s for s in scopes if isinstance(s, str)] if isinstance(scopes, list) else []
        known = remembered.scopes if remembered is not None else []
        source = known if login.INFERENCE_SCOPE in known else asked() if asked else []
        if login.INFERENCE_SCOPE in source:
            out["scopes"] = binary.union(list(source), had)  # never fewer than it had
            restored.append("scopes")
    if remembered is None:
        return _ordered(out), restored
    for key, value in remembered.fields.items():
        if key not in out:
            out[key] = value
            restored.append(key)
    if remembered.token_hash and memory.token_hash(out.get("refreshToken")) == (
        remembered.token_hash
    ):
        for key, value in remembered.token_bound.items():
            if key not in out:
                out[key] = value
                restored.append(key)
    return _ordered(out), restored


def _ordered(out: dict[str, Any]) -> dict[str, Any]:
    # Claude Code's key order: its four fields first, then the rest as found, then what we add.
    ordered = {k: out[k] for k in OWNED if k in out}
    ordered.update({k: v for k, v in out.items() if k not in ordered})
    return ordered


def plan(
    doc: object,
    remembered: memory.Remembered | None,
    now_ms: int,
    window_ms: int,
    asked: Callable[[], list[str]] | None = None,
) -> tuple[dict[str, Any], list[str]] | None:
    """The document with what was stripped put back and the names restored, or None when a
    local repair is not the fix: a token that is due, nothing missing, no scopes to be had."""
    try:
        oauth = login.oauth_section(doc)
    except ValueError:
        return None
    if not oauth or not isinstance(doc, dict):
        return None
    access = oauth.get("accessToken")
    expires = oauth.get("expiresAt")
    if not isinstance(access, str) or not access:
        return None
    if expires is not None:
        if isinstance(expires, bool) or not isinstance(expires, (int, float)):
            return None
        if now_ms + window_ms >= expires:
            return None  # due: a refresh, whose answer sets the scopes
    section, restored = fill(
        oauth, memory.applicable(oauth, remembered), restore_scopes=True, asked=asked
    )
    if not restored:
        return None
    scopes = section.get("scopes")
    if not (isinstance(scopes, list) and login.INFERENCE_SCOPE in scopes):
        return None  # the scopes are gone and nothing says which: only a refresh can
    out = dict(doc)
    out[login.OAUTH_KEY] = section
    return out, restored


def release_scopes(settings: Settings) -> list[str]:
    """The scopes the Claude Code in use asks for in its own refresh (the base set when its
    version cannot be told): what it would store for this login after a refresh."""
    return binary.refresh_scopes(binary.in_use(settings), settings)


def _tokens(doc: object) -> tuple[object, object]:
    try:
        oauth = login.oauth_section(doc) or {}
    except ValueError:
        return None, None
    return oauth.get("accessToken"), oauth.get("refreshToken")


def repair(
    storage: Storage, snap: Snapshot, settings: Settings, now_ms: int, window_ms: int
) -> list[str] | None:
    """Restore locally what `snap` lacks, if a local repair fixes it: the names restored, or
    None when it does not apply (or the file changed under us: the caller judges it afresh)."""
    remembered = memory.recall(storage.where, settings)
    asked = functools.cache(lambda: release_scopes(settings))
    if plan(snap.doc, remembered, now_ms, window_ms, asked) is None:
        return None
    judged = _tokens(snap.doc)
    with lock.write_lock(write_lock_dir(storage.lock_dir), records=settings.lock_records):
        # Re-read under the lock: only write over the very tokens we judged, never over a
        # login someone else has written meanwhile.
        try:
            latest = storage.read()
        except CredentialsError:
            return None
        if latest is None or _tokens(latest.doc) != judged:
            return None
        planned = plan(latest.doc, remembered, now_ms, window_ms, asked)
        if planned is None:
            return None
        doc, restored = planned
        with storage.pending(reserve=len(latest.raw) + 4096) as pending:
            # Writers that take no lock may rewrite the login at any moment, with tokens they
            # just got: never write ours over theirs (it would bring back a spent refresh
            # token). The storage checks its identity again at the last moment it can.
            if not pending.commit(doc, token_spent=False, unless_changed=latest.ident):
                return None
    _log(settings).info(
        "repaired locally: restored {} (the access token is good; no token request)",
        ", ".join(restored),
    )
    return restored


def _log(settings: Settings) -> Any:
    from claude_wrap.logfile.log import logger  # noqa: PLC0415

    return logger(settings)
