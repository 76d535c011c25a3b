"""The realistic token endpoint the soak relies on: single-use tokens, family revocation."""

from __future__ import annotations

import httpx

from tests.tokenserver import TokenFamilies, TokenServer


def post(server: TokenServer, refresh: str) -> httpx.Response:
    return httpx.post(server.url, json={"grant_type": "refresh_token", "refresh_token": refresh})


def test_refresh_tokens_are_single_use_and_reuse_revokes_the_family() -> None:
    families = TokenFamilies(access_ttl_s=60)
    with TokenServer() as server:
        server.default = families
        first = families.login()
        answer = post(server, first["refreshToken"]).json()
        assert families.access_ok(answer["access_token"])
        assert families.access_ok(first["accessToken"])  # the old one lives until it expires
        replay = post(server, first["refreshToken"])
        assert replay.status_code == 400
        assert replay.json()["error"] == "invalid_grant"
        # The whole family is gone now, the newest tokens too.
        assert not families.access_ok(answer["access_token"])
        assert post(server, answer["refresh_token"]).status_code == 400
        assert (families.refreshes, families.invalid_grants) == (1, 2)


def test_access_tokens_expire() -> None:
    families = TokenFamilies(access_ttl_s=0.0)
    login = families.login()
    assert not families.access_ok(login["accessToken"])
    assert families.rejected_access == 1
