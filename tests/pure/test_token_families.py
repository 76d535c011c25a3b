"""The realistic token endpoint's bookkeeping alone, without its server: an access token past
its lifetime is refused (the server's own checks: tests/process/test_tokenserver.py)."""

from __future__ import annotations

from claude_wrap_testing.tokenserver import Request, TokenFamilies


def test_access_tokens_expire() -> None:
    families = TokenFamilies(access_ttl_s=0.0)
    login = families.login()
    assert not families.access_ok(login["accessToken"])
    assert families.rejected_access == 1


def test_a_rotation_revokes_the_previous_access_token_unless_lenient() -> None:
    for lenient, expected in ((False, {"access_revoked", "revoked_403"}), (True, {None})):
        families = TokenFamilies(lenient=lenient)
        login = families.login()
        body = {"grant_type": "refresh_token", "refresh_token": login["refreshToken"]}
        reply = families(None, Request("/v1/oauth/token", {}, body, b"", 0.0))  # type: ignore[arg-type]
        assert reply.status == 200
        assert families.access_problem(login["accessToken"]) in expected
