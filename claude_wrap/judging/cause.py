"""Why a login died, from what claude-wrap could observe: a pure function of the evidence, for
`status`, `doctor`, `log` and the refresh's own error (issue 26, item 5).

Three causes, each with its own remedy:
- the login's time limit (`refreshTokenExpiresAt` passed): no refresh renews it, only `/login`;
- a refresh token someone else spent: another machine or program holds a copy of this login and
  rotated it, so ours was superseded: `/login` here, then make the other one a guest of this
  machine (docs/guests.md), or the next rotation there kills this login again;
- a login ended on the server: what remains (the API said the whole login was revoked, or the
  endpoint refused a token claude-wrap had itself sent before): only `/login`.

What claude-wrap can observe, and what it cannot: the token endpoint answers the same
`invalid_grant` for a replayed token, a revoked family and an ended login, so the answer alone
never tells them apart. The evidence that does is claude-wrap's own: the refresh tokens it sent
(as hashes, logfile/deaths.py), the login's fields, and what the API told claude about the access
token when the shim's watch saw it (claude's printed refusal). Each rule below says why it is
what it is. No I/O here: deaths.py gathers the evidence, this module weighs it.
"""

from __future__ import annotations

from claude_wrap.judging import loginend


class Cause:
    """Why a login died (strings, as in login.State: `status --json` shows them)."""

    TIME_LIMIT = "time_limit"
    SPENT_ELSEWHERE = "spent_elsewhere"
    ENDED_ON_SERVER = "ended_on_server"


class Refusal:
    """What the API said of an access token it refused, as claude printed it."""

    # A rotation superseded it: 401 "OAuth access token has been revoked." or 403
    # permission_error (docs/protocol.md section 10: the real service revokes the previous
    # access token at each refresh). Someone holds the successor, or is about to.
    SUPERSEDED = "superseded"
    # 401 authentication_error "OAuth token has been revoked. Please obtain a new token.": the
    # login itself (the whole family) was revoked, not one token of it.
    LOGIN_REVOKED = "login_revoked"


# What to do, per cause: one clause each, after the cause's own words.
ADVICE = {
    Cause.TIME_LIMIT: "no refresh renews it: run `claude /login`",
    Cause.SPENT_ELSEWHERE: (
        "another machine or program holds a copy of this login: run `claude /login`, then make "
        "the other one a guest of this machine (docs/guests.md) or stop it refreshing, or its "
        "next refresh ends this login again"
    ),
    Cause.ENDED_ON_SERVER: "run `claude /login` to log in again",
}
WORDS = {
    Cause.TIME_LIMIT: "the login reached its time limit",
    Cause.SPENT_ELSEWHERE: "another machine or program spent this login's refresh token",
    Cause.ENDED_ON_SERVER: "the login was ended on the server",
}


def refusal(message: str) -> str | None:
    """What claude's printed refusal says the API did to the access token, None when it says
    nothing of a revocation (an expired token, a login not found on disk).

    Claude Code 2.1.332 and later print their own words ("OAuth token revoked") for the two
    answers of a superseded token and only for those (claude_wrap_testing/fakeapi.py); older
    releases, and every release for other 401s, print the API's own message after `API Error:`.
    The whole login revoked is the 401 with "OAuth token has been revoked"; the same words under
    a 403 are the superseded token's permission_error."""
    low = message.lower()
    if "revoked" not in low:  # json's api_error "token_revoked" too
        return None
    if "oauth token has been revoked" in low and "403" not in low and "permission" not in low:
        return Refusal.LOGIN_REVOKED
    return Refusal.SUPERSEDED


class Evidence:
    """What was known of a login when its refresh token was refused (invalid_grant)."""

    __slots__ = ("at_ms", "ends_at", "refusal", "spent_by_us_at", "waited_s")

    def __init__(
        self,
        at_ms: int,
        *,
        ends_at: int | None = None,
        spent_by_us_at: int | None = None,
        refusal: str | None = None,
        waited_s: float | None = None,
    ) -> None:
        self.at_ms = at_ms  # when the endpoint refused it
        self.ends_at = ends_at  # the login's refreshTokenExpiresAt, when known
        self.spent_by_us_at = spent_by_us_at  # when claude-wrap had sent this very token before
        # What the API had said of this login's access token (Refusal), when the watch saw it,
        # and how long claude-wrap then watched the file for a successor that never came.
        self.refusal = refusal
        self.waited_s = waited_s


def of_invalid_grant(evidence: Evidence) -> tuple[str, str]:
    """(cause, what showed it) for a refresh token the endpoint refused, the rules in order."""
    ends_at = evidence.ends_at
    if ends_at is not None and evidence.at_ms >= ends_at:
        # First: past the time limit the endpoint refuses every copy of the login, whoever else
        # holds one, so no other evidence changes the remedy: only /login.
        return Cause.TIME_LIMIT, f"refreshTokenExpiresAt passed at {loginend.when(ends_at)}"
    if evidence.refusal == Refusal.LOGIN_REVOKED:
        # The API named the whole login, not one superseded token: a logout everywhere, a
        # revocation by the account. Nobody holds a successor, so no guest would help.
        return Cause.ENDED_ON_SERVER, (
            "the API answered that the login's token was revoked, and the token endpoint then "
            "refused its refresh token"
        )
    if evidence.spent_by_us_at is not None:
        # claude-wrap had sent this very token before: its answer was lost, or the file was put
        # back to an older copy. Nobody else is shown to hold the login; the server ended it.
        return Cause.ENDED_ON_SERVER, (
            "the token endpoint refused a refresh token claude-wrap itself had sent at "
            f"{loginend.when(evidence.spent_by_us_at)} (its answer was lost, or the file was "
            "put back to an older copy)"
        )
    # A token claude-wrap never sent, yet already refused: someone else sent it first. A login
    # ended on the server gets the same answer, and nothing claude-wrap sees tells them apart
    # then; the remedy for a copy elsewhere (a guest) is the one worth saying, and /login comes
    # first in both.
    said = "the token endpoint refused a refresh token claude-wrap had never sent"
    if evidence.refusal == Refusal.SUPERSEDED:
        # The strongest sign: the API had revoked the access token before its expiry, which the
        # service does at a rotation, and no newer token appeared on disk meanwhile.
        waited = f" within {evidence.waited_s:g} s" if evidence.waited_s is not None else ""
        said = (
            "the API revoked the access token before its expiry and no newer token appeared "
            f"on disk{waited}; then {said}"
        )
    return Cause.SPENT_ELSEWHERE, said


def of_file(
    login_ended: object, ends_at: int | None, now_ms: int, *, ok: bool
) -> tuple[str, str] | None:
    """The time limit as the stored login shows it, whoever met it: Claude Code marks a login it
    blanked so (`loginEnded: "time_limit"`, 2.1.332+), and refreshTokenExpiresAt passed says it
    of a login whose access token is due (`ok`: it is not, and the login still works until
    then). None when the file shows no time limit."""
    if login_ended == "time_limit":
        return Cause.TIME_LIMIT, "Claude Code was told the login reached its time limit"
    if not ok and ends_at is not None and now_ms >= ends_at:
        return Cause.TIME_LIMIT, f"refreshTokenExpiresAt passed at {loginend.when(ends_at)}"
    return None


def sentence(cause: str, evidence: str) -> str:
    """One line: the cause, what showed it, what to do."""
    return f"{WORDS[cause]} ({evidence}): {ADVICE[cause]}"
