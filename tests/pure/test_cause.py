"""judging/cause.py: why a login died, rule by rule, as plain functions."""

from __future__ import annotations

import pytest

from claude_wrap.judging import cause
from claude_wrap.judging.cause import Cause, Evidence, Refusal

NOW = 1_800_000_000_000


@pytest.mark.parametrize(
    ("printed", "expected"),
    [
        # 2.1.332+'s own words for a superseded token, --print and interactive.
        ("Failed to authenticate: OAuth token revoked. Please log in again or contact your "
         "administrator.", Refusal.SUPERSEDED),
        ("OAuth token revoked · Please run /login", Refusal.SUPERSEDED),
        # The API's own message after the status: 401 naming the access token, or the 403.
        ('Please run /login · API Error: 401 {"type":"error","error":{"type":'
         '"authentication_error","message":"OAuth access token has been revoked."}}',
         Refusal.SUPERSEDED),
        ('Failed to authenticate. API Error: 403 {"type":"error","error":{"type":'
         '"permission_error","message":"OAuth token has been revoked. Please obtain a new '
         'token."}}', Refusal.SUPERSEDED),
        # The whole login: 401 authentication_error "OAuth token has been revoked".
        ('Failed to authenticate. API Error: 401 {"type":"error","error":{"type":'
         '"authentication_error","message":"OAuth token has been revoked. Please obtain a new '
         'token."}}', Refusal.LOGIN_REVOKED),
        # Not a revocation: expired, or no login at all.
        ('Failed to authenticate. API Error: 401 {"type":"error","error":{"type":'
         '"authentication_error","message":"OAuth token has expired."}}', None),
        ("Not logged in · Please run /login", None),
    ],
)
def test_refusal_reads_what_the_api_said(printed: str, expected: str | None) -> None:
    assert cause.refusal(printed) == expected


def test_past_the_time_limit_nothing_else_matters() -> None:
    found = cause.of_invalid_grant(
        Evidence(NOW, ends_at=NOW - 1, spent_by_us_at=NOW - 5, refusal=Refusal.SUPERSEDED)
    )
    assert found[0] == Cause.TIME_LIMIT


def test_the_whole_login_revoked_is_the_server() -> None:
    found = cause.of_invalid_grant(Evidence(NOW, ends_at=NOW + 1, refusal=Refusal.LOGIN_REVOKED))
    assert found[0] == Cause.ENDED_ON_SERVER


def test_a_token_we_had_sent_is_not_someone_else_s() -> None:
    found = cause.of_invalid_grant(Evidence(NOW, spent_by_us_at=NOW - 60_000))
    assert found[0] == Cause.ENDED_ON_SERVER
    assert "claude-wrap itself had sent" in found[1]


def test_a_token_we_never_sent_is_a_copy_elsewhere() -> None:
    plain = cause.of_invalid_grant(Evidence(NOW))
    assert plain == (
        Cause.SPENT_ELSEWHERE,
        "the token endpoint refused a refresh token claude-wrap had never sent",
    )
    seen = cause.of_invalid_grant(Evidence(NOW, refusal=Refusal.SUPERSEDED, waited_s=3.0))
    assert seen[0] == Cause.SPENT_ELSEWHERE
    assert seen[1].startswith("the API revoked the access token before its expiry and no newer "
                              "token appeared on disk within 3 s")


def test_each_cause_has_its_own_words_and_remedy() -> None:
    lines = {c: cause.sentence(c, "x") for c in cause.WORDS}
    assert len(set(lines.values())) == 3
    assert "guest" in lines[Cause.SPENT_ELSEWHERE]
    assert "guest" not in lines[Cause.ENDED_ON_SERVER] + lines[Cause.TIME_LIMIT]


def test_the_file_shows_the_time_limit() -> None:
    assert cause.of_file("time_limit", None, NOW, ok=False) is not None
    assert cause.of_file(None, NOW - 1, NOW, ok=False) is not None
    assert cause.of_file(None, NOW - 1, NOW, ok=True) is None  # still works until its expiry
    assert cause.of_file(None, NOW + 1, NOW, ok=False) is None
