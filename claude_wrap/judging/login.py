"""Will Claude Code accept this login? A pure function of the file's content and the clock.

Claude Code counts a stored login only if `scopes` is a list holding "user:inference" and the
access token is non-empty (docs/protocol.md section 2); a tool that drops `scopes` logs the user
out whatever the expiry. No I/O here: `store` reads, this module judges.
"""

from __future__ import annotations

import math

from claude_wrap.config import protocol
from claude_wrap.config.protocol import DEFAULT_SCOPES

TYPE_CHECKING = False  # see settings.py: typing stays off the hot path
if TYPE_CHECKING:
    from typing import Any


class State:
    """What a stored login is now, as judge() finds it. States are strings grouped in a class
    namespace, the project's one kind for them: `enum` would cost its import (~5 ms with
    functools and collections) on paths that are timed, and the strings are what status --json
    and the log show."""

    OK = "ok"
    EXPIRING = "expiring"
    EXPIRED = "expired"
    MISSING_SCOPES = "missing_scopes"
    LOGGED_OUT = "logged_out"
    NO_REFRESH_TOKEN = "no_refresh_token"  # noqa: S105 - a state name, not a secret
    MISSING = "missing"
    MALFORMED = "malformed"


# States a refresh can fix.
REFRESHABLE = (State.EXPIRING, State.EXPIRED, State.MISSING_SCOPES)
# Why a login is LOGGED_OUT once it reached its time limit (refreshTokenExpiresAt, or Claude Code's
# `loginEnded: "time_limit"`): one line for `claude-wrap status` and the watcher's messages.
TIME_LIMIT_DETAIL = "the login reached its time limit: no refresh renews it, only `claude /login`"

# protocol.py's, named here too for the modules that judge a login with this one's words.
INFERENCE_SCOPE = protocol.INFERENCE_SCOPE
OAUTH_KEY = protocol.OAUTH_KEY

# expiresAt is in milliseconds. Below this (March 1973) it is surely seconds; above the upper bound
# (year 5138) it is garbage. Either way we refuse to guess and leave the file alone.
MIN_PLAUSIBLE_MS = 100_000_000_000
MAX_PLAUSIBLE_MS = 100_000_000_000_000


class Verdict:
    """What we concluded about one login. `usable` is whether Claude Code would accept it now."""

    __slots__ = (
        "access_tail",
        "detail",
        "expires_at",
        "has_refresh_token",
        "login_ends_at",
        "scopes",
        "state",
        "subscription_type",
        "usable",
    )

    def __init__(
        self,
        state: str,
        detail: str = "",
        *,
        usable: bool = False,
        expires_at: int | None = None,
        scopes: list[str] | None = None,
        has_refresh_token: bool = False,
        subscription_type: str | None = None,
        access_tail: str = "",
        login_ends_at: int | None = None,
    ) -> None:
        self.state = state
        self.detail = detail
        self.usable = usable
        self.expires_at = expires_at
        self.scopes = scopes
        self.has_refresh_token = has_refresh_token
        self.subscription_type = subscription_type
        self.access_tail = access_tail
        # refreshTokenExpiresAt: the login's hard end (no refresh extends it); None when absent.
        self.login_ends_at = login_ends_at

    def __repr__(self) -> str:
        return f"Verdict({self.state!r}, {self.detail!r})"


def _describe(value: object) -> str:
    return {str: "a string", bool: "a boolean", list: "a list", dict: "an object"}.get(
        type(value), "null" if value is None else "a number"
    )


def access_token(doc: object) -> str:
    """The stored access token, "" when there is none (no document, no login, not a string);
    ValueError when the document's shape is wrong (oauth_section). The one reader of it."""
    return _token(doc, "accessToken")


def refresh_token(doc: object) -> str:
    """The stored refresh token, as access_token reads the access token."""
    return _token(doc, "refreshToken")


def _token(doc: object, key: str) -> str:
    oauth = oauth_section(doc) if doc is not None else None
    value = oauth.get(key) if oauth else None
    return value if isinstance(value, str) else ""


def oauth_section(doc: object) -> dict[str, Any] | None:
    """The `claudeAiOauth` object, None when absent; ValueError when the shape is wrong."""
    if not isinstance(doc, dict):
        raise ValueError(f"holds {_describe(doc)}, not a JSON object")
    section = doc.get(OAUTH_KEY)
    if section is None:
        return None
    if not isinstance(section, dict):
        raise ValueError(f"{OAUTH_KEY} is {_describe(section)}, not an object")
    return section


def login_end(oauth: dict[str, Any]) -> int | None:
    """refreshTokenExpiresAt (ms) when it is a plausible time, else None: some logins lack it, and
    a value we cannot read is no reason to judge the login broken (Claude Code does not)."""
    value = oauth.get("refreshTokenExpiresAt")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if not math.isfinite(value) or not MIN_PLAUSIBLE_MS <= value <= MAX_PLAUSIBLE_MS:
        return None
    return int(value)


def _malformed_tokens(access: object, refresh: object) -> str:
    """Why accessToken or refreshToken cannot be read ("" when both can)."""
    for name, value in (("accessToken", access), ("refreshToken", refresh)):
        if value is not None and not isinstance(value, str):
            return f"{name} is {_describe(value)}, not a string"
    return ""


def _malformed_expiry(expires: object) -> str:
    """Why a present expiresAt is not a time in milliseconds ("" when it is one)."""
    if isinstance(expires, bool) or not isinstance(expires, (int, float)):
        return f"expiresAt is {_describe(expires)}, not a number"
    if not math.isfinite(expires) or expires < 0:
        return f"expiresAt is {expires}, not a time"
    if 0 < expires < MIN_PLAUSIBLE_MS:
        return f"expiresAt is {expires}: seconds, not the milliseconds expected"
    if expires > MAX_PLAUSIBLE_MS:
        return f"expiresAt is {expires}, far past any plausible time"
    return ""


def _missing_scope(scopes: object) -> str:
    """Why the stored scopes do not let Claude Code use the login."""
    if scopes is None:
        return "no scopes are stored"
    if not isinstance(scopes, list):
        return f"scopes is {_describe(scopes)}, not a list"
    return f'the stored scopes lack "{INFERENCE_SCOPE}"'


def _token_state(
    has_scope: bool,
    scopes: object,
    access: str | None,
    expires: int | None,
    *,
    now_ms: int,
    window_ms: int,
) -> tuple[str, str]:
    """The state of a login that has tokens, before its refresh token and its end are weighed."""
    if not has_scope:
        return State.MISSING_SCOPES, _missing_scope(scopes)
    if not access:
        return State.EXPIRED, "the access token is blank"
    if expires is not None and now_ms >= expires:
        return State.EXPIRED, "the access token has expired"
    if expires is not None and now_ms + window_ms >= expires:
        return State.EXPIRING, "the access token expires soon"
    return State.OK, ""


def judge(doc: object, now_ms: int, window_ms: int) -> Verdict:
    try:
        oauth = oauth_section(doc)
    except ValueError as exc:
        return Verdict(State.MALFORMED, str(exc))
    if oauth is None:
        return Verdict(State.LOGGED_OUT, f"no {OAUTH_KEY} login is stored")

    access = oauth.get("accessToken")
    refresh = oauth.get("refreshToken")
    expires = oauth.get("expiresAt")
    scopes = oauth.get("scopes")
    sub = oauth.get("subscriptionType")
    malformed = _malformed_tokens(access, refresh)
    if not malformed and expires is not None:
        malformed = _malformed_expiry(expires)
    if malformed:
        return Verdict(State.MALFORMED, malformed)
    if expires is not None:
        expires = int(expires)

    scope_list = [s for s in scopes if isinstance(s, str)] if isinstance(scopes, list) else None

    def verdict(state: str, detail: str, usable: bool = False) -> Verdict:
        return Verdict(
            state,
            detail,
            usable=usable,
            expires_at=expires,
            scopes=scope_list,
            has_refresh_token=bool(refresh),
            subscription_type=sub if isinstance(sub, str) else None,
            # Never more than the last 4 characters, and nothing of a short (test) token.
            access_tail=access[-4:] if access and len(access) >= 12 else "",
            login_ends_at=login_end(oauth),
        )

    if not access and not refresh:
        if oauth.get("loginEnded") == "time_limit":
            # Claude Code 2.1.332+ blanks the login so when the endpoint said its refresh token
            # reached the login's time limit (docs/protocol.md section 4).
            return verdict(State.LOGGED_OUT, TIME_LIMIT_DETAIL)
        return verdict(State.LOGGED_OUT, "the stored tokens are blank (the login was revoked)")

    has_scope = scope_list is not None and INFERENCE_SCOPE in scope_list
    state, detail = _token_state(
        has_scope, scopes, access, expires, now_ms=now_ms, window_ms=window_ms
    )
    usable = has_scope and bool(access) and (expires is None or now_ms < expires)
    ends_at = login_end(oauth)
    if state in (State.EXPIRING, State.EXPIRED) and ends_at is not None and now_ms >= ends_at:
        # refreshTokenExpiresAt passed: the endpoint would only answer invalid_grant. No token
        # request of ours; claude itself may still try, and says what it got.
        return verdict(State.LOGGED_OUT, f"{detail}, and {TIME_LIMIT_DETAIL}", usable)
    if state != State.OK and not refresh:
        state, detail = State.NO_REFRESH_TOKEN, f"{detail} and no refresh token is stored"
    return verdict(state, detail, usable)


def merged(
    doc: dict[str, Any], response: dict[str, Any], now_ms: int, asked: list[str] | None = None
) -> dict[str, Any]:
    """`doc` with the four fields a refresh owns replaced; every other key kept, in its place.

    `response` is a validated token response (see oauth.py). Scopes come from the response,
    else from what the request asked for (`asked`, see request_scopes), else the stored list,
    else Claude Code's claude.ai defaults, and are always written as a list.
    """
    old = doc.get(OAUTH_KEY)
    oauth = dict(old) if isinstance(old, dict) else {}
    stored = oauth.get("scopes")
    if response.get("scope"):
        scopes = str(response["scope"]).split()
    elif asked:
        scopes = list(asked)
    elif isinstance(stored, list) and INFERENCE_SCOPE in stored:
        scopes = list(stored)
    else:
        scopes = list(DEFAULT_SCOPES)
    owned = {
        "accessToken": response["access_token"],
        "refreshToken": response.get("refresh_token") or oauth.get("refreshToken"),
        "expiresAt": now_ms + int(response["expires_in"] * 1000),
        "scopes": scopes,
    }
    # Claude Code's own key order (docs/protocol.md section 1): its four fields first, then the
    # rest (subscriptionType, rateLimitTier, unknown ones) in the order they were found.
    oauth = {**owned, **{k: v for k, v in oauth.items() if k not in owned}}
    out = dict(doc)
    out[OAUTH_KEY] = oauth
    return out


def request_scopes(doc: object, remembered: list[str] | tuple[str, ...] = ()) -> list[str]:
    """The scopes a refresh asks for: the stored ones when they are right, united with the ones
    this login was last seen with (memory.py), so that a refresh of a stripped login never asks
    for fewer than it had; the claude.ai defaults when neither is known. The one place the
    requested list is built: what the Claude Code version in use asks for joins here too."""
    try:
        oauth = oauth_section(doc) or {}
    except ValueError:
        oauth = {}
    stored = oauth.get("scopes")
    out: list[str] = []
    if isinstance(stored, list) and INFERENCE_SCOPE in stored:
        out = [s for s in stored if isinstance(s, str)]
    for scope in remembered:
        if scope not in out:
            out.append(scope)
    if INFERENCE_SCOPE not in out:
        out = [*DEFAULT_SCOPES, *(s for s in out if s not in DEFAULT_SCOPES)]
    return out
