"""Local repair: put back what another tool stripped from a login whose access token is still
good, without a token request (issue 14).

Third-party refreshers rewrite the file with only accessToken, refreshToken and expiresAt:
Claude Code then counts the login as logged out (it gates on `scopes`), though the token works.
Spending the refresh token to fix that costs a round trip and one more chance to collide with
that tool, which takes no lock. Here the remembered scope set and fields (memory.py) are written
back under Claude Code's storage-write lock; the tokens stay exactly as they are, and the write
happens only if the file still holds the very tokens that were judged.

A token that is due (inside the refresh window, or expired) is refreshed instead: that is a
refresh's job anyway, and the server's answer then sets the scopes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from claude_wrap import lock, login, memory, paths
from claude_wrap.errors import CredentialsError

if TYPE_CHECKING:
    from collections.abc import Mapping

    from claude_wrap.store import Snapshot, Storage

OWNED = ("accessToken", "refreshToken", "expiresAt", "scopes")


def fill(
    oauth: dict[str, Any], remembered: memory.Remembered | None, *, restore_scopes: bool
) -> tuple[dict[str, Any], list[str]]:
    """`oauth` with the remembered fields (and, if asked, scopes) put where the file has none:
    (the new section, the names restored). Present values are never overwritten."""
    if remembered is None:
        return oauth, []
    restored = []
    out = dict(oauth)
    scopes = out.get("scopes")
    whole = isinstance(scopes, list) and login.INFERENCE_SCOPE in scopes
    if restore_scopes and not whole and login.INFERENCE_SCOPE in remembered.scopes:
        out["scopes"] = list(remembered.scopes)
        restored.append("scopes")
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
    # Claude Code's key order: its four fields first, then the rest as found, then what we add.
    ordered = {k: out[k] for k in OWNED if k in out}
    ordered.update({k: v for k, v in out.items() if k not in ordered})
    return ordered, restored


def plan(
    doc: object, remembered: memory.Remembered | None, now_ms: int, window_ms: int
) -> tuple[dict[str, Any], list[str]] | None:
    """The document with what was stripped put back and the names restored, or None when a
    local repair is not the fix: no memory, a token that is due, nothing missing."""
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
    section, restored = fill(oauth, memory.applicable(oauth, remembered), restore_scopes=True)
    if not restored:
        return None
    scopes = section.get("scopes")
    if not (isinstance(scopes, list) and login.INFERENCE_SCOPE in scopes):
        return None  # the scopes are gone and no memory has them: only a refresh can say
    out = dict(doc)
    out[login.OAUTH_KEY] = section
    return out, restored


def _tokens(doc: object) -> tuple[object, object]:
    try:
        oauth = login.oauth_section(doc) or {}
    except ValueError:
        return None, None
    return oauth.get("accessToken"), oauth.get("refreshToken")


def repair(
    storage: Storage, snap: Snapshot, env: Mapping[str, str], now_ms: int, window_ms: int
) -> list[str] | None:
    """Restore locally what `snap` lacks, if a local repair fixes it: the names restored, or
    None when it does not apply (or the file changed under us: the caller judges it afresh)."""
    remembered = memory.recall(storage.where)
    if plan(snap.doc, remembered, now_ms, window_ms) is None:
        return None
    judged = _tokens(snap.doc)
    with lock.write_lock(paths.write_lock(storage.lock_dir), records=paths.lock_records(env)):
        # Re-read under the lock: only write over the very tokens we judged, never over a
        # login someone else has written meanwhile.
        try:
            latest = storage.read()
        except CredentialsError:
            return None
        if latest is None or _tokens(latest.doc) != judged:
            return None
        planned = plan(latest.doc, remembered, now_ms, window_ms)
        if planned is None:
            return None
        doc, restored = planned
        with storage.pending(reserve=len(latest.raw) + 4096) as pending:
            # Writers that take no lock may rewrite the login at any moment, with tokens they
            # just got: never write ours over theirs (it would bring back a spent refresh
            # token). The storage checks its identity again at the last moment it can.
            if not pending.commit(doc, token_spent=False, unless_changed=latest.ident):
                return None
    _log(env).info(
        "repaired locally: restored {} (the access token is good; no token request)",
        ", ".join(restored),
    )
    return restored


def _log(env: Mapping[str, str]) -> Any:
    from claude_wrap.log import logger  # noqa: PLC0415

    return logger(env)
