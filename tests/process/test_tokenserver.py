"""The realistic token endpoint the soak relies on: single-use tokens, family revocation."""

from __future__ import annotations

import time

import httpx

from claude_wrap_testing.tokenserver import Reply, Request, TokenFamilies, TokenServer


def post(server: TokenServer, refresh: str) -> httpx.Response:
    return httpx.post(server.url, json={"grant_type": "refresh_token", "refresh_token": refresh})


def test_refresh_tokens_are_single_use_and_reuse_revokes_the_family() -> None:
    families = TokenFamilies(access_ttl_s=60)
    with TokenServer() as server:
        server.default = families
        first = families.login()
        answer = post(server, first["refreshToken"]).json()
        assert families.access_ok(answer["access_token"])
        if families.lenient:
            assert families.access_ok(first["accessToken"])  # lives on until it expires
        else:  # the real service revokes it at the rotation
            assert families.access_problem(first["accessToken"]) in ("access_revoked",
                                                                      "revoked_403")
        replay = post(server, first["refreshToken"])
        assert replay.status_code == 400
        assert replay.json()["error"] == "invalid_grant"
        # The whole family is gone now, the newest tokens too.
        assert not families.access_ok(answer["access_token"])
        assert post(server, answer["refresh_token"]).status_code == 400
        assert (families.refreshes, families.invalid_grants) == (1, 2)


def test_a_delay_runs_from_the_requests_arrival() -> None:
    """As a remote server's would: however late the handling thread gets to the request (here
    held 1 s before it answers), the answer is due `delay` (1 s) after the request came in, so
    it goes at once. Counted from the reading, it could not come before 2 s: that bound, not a
    speed, is what is checked."""

    def late(server: TokenServer, request: Request) -> Reply:
        time.sleep(1.0)  # the handling thread busy elsewhere, through the whole delay
        return Reply(200, {"access_token": "a", "expires_in": 60}, delay=1.0)

    with TokenServer() as server:
        server.script(late)
        started = time.monotonic()
        assert post(server, "r").status_code == 200
        took = time.monotonic() - started
    assert took < 2.0
