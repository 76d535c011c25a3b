"""What each stored login last had, remembered so that it can be put back after another tool
strips it (issue 14): the last complete scope set and the fields Claude Code writes beside the
tokens (subscriptionType, rateLimitTier, clientId, refreshTokenExpiresAt).

One small JSON file per credentials file (or Keychain item), in claude-wrap's state folder,
0600. Never a token: only scope names, those few plain fields, and a 64-bit prefix of the
SHA-256 of the refresh token the fields were seen with (a hash of a random secret of that size
cannot be turned back into it, and a prefix even less).

Whose memory is it? Keyed on where the login is stored, and always the last *complete* login
seen there (scopes holding user:inference): a different account only ever arrives through
`claude /login`, which Claude Code writes complete, so it replaces the memory before any strip
of it could be repaired with the old one's fields. Third-party refreshers only ever rewrite the
login that is there (they spend its refresh token), so a stripped file is the remembered login's
successor. Two more guards: fields are only filled in where the file has none (a present
subscriptionType is never overwritten, and one that differs from the memory's marks another
account: then the memory is not used at all), and refreshTokenExpiresAt, which belongs to one
refresh token, is only restored beside the very refresh token it was seen with.

Written off the hot path only: when a verdict is judged afresh on a path that runs claude or
renews the login (refresher.remember), and only when something changed.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import TYPE_CHECKING, Any

from claude_wrap.config.settings import Settings
from claude_wrap.judging import login
from claude_wrap.storage import privatefile

if TYPE_CHECKING:
    from collections.abc import Mapping

# The fields Claude Code writes beside the tokens that a stripping tool drops and we may restore.
FIELDS = ("subscriptionType", "rateLimitTier", "clientId")
# Fields that describe one refresh token: restored only beside that very token.
TOKEN_BOUND = ("refreshTokenExpiresAt",)
VERSION = 1


class Remembered:
    __slots__ = ("fields", "scopes", "token_bound", "token_hash")

    def __init__(
        self,
        scopes: list[str],
        fields: dict[str, Any],
        token_hash: str = "",
        token_bound: dict[str, Any] | None = None,
    ) -> None:
        self.scopes = scopes
        self.fields = fields
        self.token_hash = token_hash
        self.token_bound = token_bound or {}


def token_hash(token: object) -> str:
    """A 64-bit prefix of SHA-256: enough to tell two refresh tokens apart, nothing to spend."""
    if not isinstance(token, str) or not token:
        return ""
    return hashlib.sha256(token.encode()).hexdigest()[:16]


def file_for(where: str, settings: Settings) -> str:
    key = hashlib.sha256(where.encode()).hexdigest()[:16]
    return os.path.join(settings.state_dir, "logins", f"{key}.json")


def _plain(value: object) -> bool:
    return isinstance(value, (str, int, float, bool))  # never an object that might hold a secret


def complete(doc: object) -> Remembered | None:
    """What a complete login holds worth remembering; None when it is not complete."""
    try:
        oauth = login.oauth_section(doc)
    except ValueError:
        return None
    if not oauth:
        return None
    scopes = oauth.get("scopes")
    if not isinstance(scopes, list) or login.INFERENCE_SCOPE not in scopes:
        return None
    fields = {k: oauth[k] for k in FIELDS if k in oauth and _plain(oauth[k])}
    bound = {k: oauth[k] for k in TOKEN_BOUND if k in oauth and _plain(oauth[k])}
    return Remembered(
        [s for s in scopes if isinstance(s, str)],
        fields,
        token_hash(oauth.get("refreshToken")),
        bound,
    )


def recall(where: str, settings: Settings) -> Remembered | None:
    try:
        with open(file_for(where, settings), "rb") as f:
            data = json.loads(f.read(65536))
        if not isinstance(data, dict) or data.get("where") != where:
            return None
        scopes = data.get("scopes")
        fields = data.get("fields")
        bound = data.get("token_bound")
        if not isinstance(scopes, list) or not isinstance(fields, dict):
            return None
        return Remembered(
            [s for s in scopes if isinstance(s, str)],
            {k: v for k, v in fields.items() if k in FIELDS},
            str(data.get("token_hash") or ""),
            {k: v for k, v in (bound or {}).items() if k in TOKEN_BOUND},
        )
    except (OSError, ValueError, TypeError, AttributeError):
        return None  # only a memory: without it a strip is repaired by a refresh, as before


def note(where: str, doc: object, settings: Settings) -> bool:
    """Remember this login if it is complete and differs from what is remembered. True when
    written. Never raises: a memory that cannot be written costs a refresh later, nothing more."""
    seen = complete(doc)
    if seen is None:
        return False
    old = recall(where, settings)
    if (
        old is not None
        and old.scopes == seen.scopes
        and old.fields == seen.fields
        and old.token_hash == seen.token_hash
        and old.token_bound == seen.token_bound
    ):
        return False
    record = {
        "version": VERSION,
        "where": where,
        "scopes": seen.scopes,
        "fields": seen.fields,
        "token_hash": seen.token_hash,
        "token_bound": seen.token_bound,
    }
    return privatefile.replace(
        file_for(where, settings), json.dumps(record, separators=(",", ":")).encode()
    )


def applicable(oauth: Mapping[str, Any], remembered: Remembered | None) -> Remembered | None:
    """The memory if it may be used for this login: not when the file names another
    subscription than the one remembered (another account's login)."""
    if remembered is None:
        return None
    for key in ("subscriptionType", "rateLimitTier"):
        have = oauth.get(key)
        if have is not None and key in remembered.fields and remembered.fields[key] != have:
            return None
    return remembered
