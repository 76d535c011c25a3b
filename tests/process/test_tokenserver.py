"""The realistic token endpoints: TokenFamilies (single-use tokens, family revocation), and the
plain TokenServer, its fake claude and fake API, faithful by default (issue 26)."""

from __future__ import annotations

import subprocess
import time

import httpx
import pytest

from claude_wrap_testing.fakeapi import FakeAnthropicAPI
from claude_wrap_testing.tokenserver import (
    Reply,
    Request,
    TokenFamilies,
    TokenServer,
    invalid_grant,
    ok,
)
from tests.conftest import REFRESH, Sandbox, login_doc


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


def test_a_spent_refresh_token_takes_its_access_token_with_it() -> None:
    """The plain TokenServer is as hard as the real service (issue 26): the access token that
    came with a refresh token (registered, or issued by the server) is refused once that refresh
    token is spent, by `check`, by GET /check, and by a FakeAnthropicAPI that asks it."""
    with TokenServer(lenient=False) as server, FakeAnthropicAPI(check_token=server.check) as api:
        server.register("sk-ant-oat01-seeded", "sk-ant-ort01-seeded")
        assert server.check("sk-ant-oat01-seeded") is None
        first = post(server, "sk-ant-ort01-seeded").json()
        assert server.check("sk-ant-oat01-seeded") == "access_revoked"
        assert server.check(first["access_token"]) is None
        second = post(server, first["refresh_token"]).json()
        assert server.check(first["access_token"]) == "revoked_403"
        assert server.check(second["access_token"]) is None
        assert server.check("sk-ant-oat01-never-heard-of") is None  # unknown: accepted
        asked = httpx.get(server.check_url, headers={"Authorization": "Bearer sk-ant-oat01-seeded"})
        assert asked.json() == {"problem": "access_revoked"}
        assert len(server.requests) == 2  # a check is no refresh
        refused = httpx.post(f"{api.url}/v1/messages", json={},
                             headers={"Authorization": "Bearer sk-ant-oat01-seeded"})
        assert refused.status_code == 401
        assert refused.json()["error"]["message"] == "OAuth access token has been revoked."
        taken = httpx.post(f"{api.url}/v1/messages", json={},
                           headers={"Authorization": f"Bearer {second['access_token']}"})
        assert taken.status_code == 200


def test_a_refused_or_unrotated_refresh_revokes_only_what_it_replaced() -> None:
    """An answer that gives no new access token spends nothing; one that keeps the refresh token
    (rotate=False) revokes the access token it replaces and pairs the new one with it."""
    with TokenServer(lenient=False) as server:
        server.register("sk-ant-oat01-a", "sk-ant-ort01-r")
        server.script(invalid_grant(), Reply(500, b"busy"), ok(rotate=False), ok(rotate=False))
        assert post(server, "sk-ant-ort01-r").status_code == 400
        assert post(server, "sk-ant-ort01-r").status_code == 500
        assert server.check("sk-ant-oat01-a") is None
        kept = post(server, "sk-ant-ort01-r").json()
        assert "refresh_token" not in kept
        assert server.check("sk-ant-oat01-a") == "access_revoked"
        post(server, "sk-ant-ort01-r")
        assert server.check(kept["access_token"]) == "revoked_403"


def test_the_lenient_switch_revokes_nothing() -> None:
    with TokenServer(lenient=True) as server:
        server.register("sk-ant-oat01-a", "sk-ant-ort01-r")
        post(server, "sk-ant-ort01-r")
        assert server.check("sk-ant-oat01-a") is None


def _run_fake(sandbox: Sandbox, *args: str, **env: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [str(sandbox.fake), *args], env={**sandbox.env, **env}, cwd=sandbox.root,
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )


def _started(sandbox: Sandbox, runs: int) -> None:
    deadline = time.monotonic() + 30
    while len(sandbox.runs()) < runs:
        assert time.monotonic() < deadline, "the fake claude never started"
        time.sleep(0.02)


def test_the_fake_claude_refuses_a_revoked_token_as_the_real_one_prints_it(
    sandbox: Sandbox, token_server: TokenServer
) -> None:
    """The sandbox's fake claude asks the token server (FAKE_CLAUDE_TOKEN_CHECK): once the login
    was refreshed elsewhere and the file not rewritten, --print and the TUI both refuse it."""
    if token_server.lenient:
        pytest.skip("CLAUDE_WRAP_TEST_TOKENS=lenient: nothing is revoked")
    sandbox.write(login_doc())
    ok_run = subprocess.run([str(sandbox.fake), "-p", "hi"], env=sandbox.env, cwd=sandbox.root,
                            capture_output=True, check=False)
    assert ok_run.returncode == 0, ok_run.stdout
    post(token_server, REFRESH)  # another program spends the stored refresh token
    refused = subprocess.run([str(sandbox.fake), "-p", "hi"], env=sandbox.env,
                             cwd=sandbox.root, capture_output=True, check=False)
    assert (refused.returncode, refused.stdout.decode()) == (
        1,
        "Failed to authenticate: OAuth token revoked. Please log in again or contact your "
        "administrator.\n",
    )
    tui = subprocess.run([str(sandbox.fake)], env={**sandbox.env, "FAKE_CLAUDE_TUI": "1"},
                         cwd=sandbox.root, input=b"hello\nquit\n", capture_output=True,
                         check=False)
    assert "OAuth token revoked \xb7 Please run /login\r\n" in tui.stdout.decode()


def test_the_fake_claude_rereads_the_file_once_on_a_revoked_token(
    sandbox: Sandbox, token_server: TokenServer
) -> None:
    """Like Claude Code on a 401: a run that started with a token revoked meanwhile re-reads the
    file and answers with the newer token found there."""
    sandbox.write(login_doc())
    run = _run_fake(sandbox, "-p", "hi", FAKE_CLAUDE_SLEEP="1.5")
    _started(sandbox, 1)  # it read the file and sleeps before its "API call"
    new = post(token_server, REFRESH).json()
    sandbox.write(login_doc(access=new["access_token"], refresh=new["refresh_token"]))
    out, _ = run.communicate(timeout=30)
    assert run.returncode == 0, out
    assert out.startswith(b"fake answer:")


def test_the_servers_of_one_process_are_one_service() -> None:
    """A guest's token server answers for the owner's tokens: a token revoked at one running
    server is refused by every other's check; a stopped server's tokens are forgotten."""
    with TokenServer("o", lenient=False) as owner, TokenServer("g", lenient=False) as guest:
        assert TokenServer.serving(guest.url) is guest
        owner.register("sk-ant-oat01-owner", "sk-ant-ort01-owner")
        post(owner, "sk-ant-ort01-owner")
        assert guest.check("sk-ant-oat01-owner") == "access_revoked"
    assert TokenServer.serving(owner.url) is None
    with TokenServer("h") as later:
        assert later.check("sk-ant-oat01-owner") is None
