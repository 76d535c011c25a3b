"""The real `claude` refreshing its own login, through the loopback proxy, at a test server.

This is what claude-wrap competes with for the single-use refresh token, so it is pinned here:
what the binary sends, what it stores, and what it does with each kind of answer.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from claude_wrap.watch import detect
from claude_wrap_testing.fakeapi import EXPIRED_MESSAGE, FakeAnthropicAPI
from claude_wrap_testing.isolation import (
    ClaudeBinary,
    ClaudeHome,
    Run,
    TokenPair,
    new_tokens,
    now_ms,
)
from claude_wrap_testing.tlsproxy import OAuthProxy
from claude_wrap_testing.tokenserver import (
    DEFAULT_SCOPE,
    Reply,
    Request,
    TokenServer,
    invalid_grant,
    ok,
)

from .samples import check_sample

CLIENT_ID = "9d1c250a-e61b-44d9-88ed-5944d1962f5e"
# Versions seen not to refresh on a 401 and to leave the file after invalid_grant (2.1.87, in
# this harness: an expired-by-the-API token plus an expired stored expiry).
NO_REFRESH_ON_401 = frozenset({"2.1.87"})


def _run_print(claude: ClaudeBinary, home: ClaudeHome, proxy: OAuthProxy) -> Run:
    return claude.run(home, "--print", input=b"hello\n", env=home.env(**proxy.env()))


def _expired_login(home: ClaudeHome, **kwargs: Any) -> tuple[TokenPair, dict[str, Any]]:
    tokens = new_tokens()
    return tokens, home.write_credentials(tokens, expires_at=now_ms() - 60_000, **kwargs)


def test_expired_login_is_refreshed_by_claude_itself(
    claude: ClaudeBinary,
    claude_home: ClaudeHome,
    fake_api: FakeAnthropicAPI,
    token_server: TokenServer,
    oauth_proxy: OAuthProxy,
) -> None:
    fake_api.answer = "answered after a refresh"
    # Fewer scopes than a claude.ai login has: it asks for the full default set anyway.
    tokens, written = _expired_login(claude_home, scopes=["user:inference", "user:profile"])
    started = now_ms()
    run = _run_print(claude, claude_home, oauth_proxy)
    assert (run.returncode, run.out, run.err) == (0, "answered after a refresh\n", "")

    [refresh] = token_server.requests
    # Not the stored scopes joined (docs/protocol.md section 4 said so): the full default set, and
    # with 2.1.332 `user:plugins` too (section 9).
    assert refresh.body is not None
    asked = refresh.body.pop("scope").split(" ")
    assert set(DEFAULT_SCOPE.split(" ")) <= set(asked)
    assert refresh.body == {
        "grant_type": "refresh_token", "refresh_token": tokens.refresh, "client_id": CLIENT_ID,
    }
    assert refresh.headers["content-type"] == "application/json"
    assert "authorization" not in refresh.headers
    [issued] = token_server.issued
    assert fake_api.tokens_used() == [issued["access_token"]]

    stored = claude_home.read_credentials()
    oauth = stored["claudeAiOauth"]
    assert oauth["accessToken"] == issued["access_token"]
    assert oauth["refreshToken"] == issued["refresh_token"]
    assert oauth["scopes"] == issued["scope"].split(" ")  # what the server granted
    assert oauth["expiresAt"] >= started + issued["expires_in"] * 1000
    assert (oauth["subscriptionType"], oauth["rateLimitTier"]) == ("max", "default_claude_max_20x")
    assert stored["mcpOAuth"] == written["mcpOAuth"]
    # After the refresh it asks for the account's profile with the new token (under load it
    # sometimes asks twice: CI saw it; what matters is that it asks, and with which token).
    profile_calls = [r for r in oauth_proxy.requests if r.path == "/api/oauth/profile"]
    assert profile_calls
    assert {r.token for r in profile_calls} == {issued["access_token"]}


def test_a_401_makes_it_refresh_a_token_it_thought_valid(
    claude: ClaudeBinary,
    claude_home: ClaudeHome,
    fake_api: FakeAnthropicAPI,
    token_server: TokenServer,
    oauth_proxy: OAuthProxy,
) -> None:
    tokens = new_tokens()
    claude_home.write_credentials(tokens)  # expires in 8 hours
    fake_api.expire(tokens.access)
    run = _run_print(claude, claude_home, oauth_proxy)
    if claude.version in NO_REFRESH_ON_401:
        # Seen with 2.1.87: the 401 is the end of the run, no refresh of a token it thought valid
        # (that is what the shim's output watcher repairs).
        assert (run.returncode, run.err) == (1, "")
        assert run.out.startswith("Failed to authenticate. API Error: 401 "), run.out
        assert token_server.issued == []
        return
    assert (run.returncode, run.out, run.err) == (0, fake_api.answer + "\n", "")
    [issued] = token_server.issued
    assert fake_api.tokens_used() == [tokens.access, issued["access_token"]]
    assert claude_home.read_credentials()["claudeAiOauth"]["accessToken"] == issued["access_token"]


def test_invalid_grant_blanks_the_login(
    claude: ClaudeBinary,
    claude_home: ClaudeHome,
    fake_api: FakeAnthropicAPI,
    token_server: TokenServer,
    oauth_proxy: OAuthProxy,
) -> None:
    # A dead refresh token stays dead: every attempt gets invalid_grant.
    token_server.default = lambda server, request: invalid_grant()
    tokens, written = _expired_login(claude_home)
    fake_api.expire(tokens.access)
    run = _run_print(claude, claude_home, oauth_proxy)
    # 2.1.197: "Not logged in · Please run /login"; 2.1.332: "Failed to authenticate: OAuth
    # session expired and could not be refreshed" (docs/protocol.md section 9). Recorded per
    # version.
    assert (run.returncode, run.err) == (1, "")
    assert detect.is_failure_text(run.out), run.out
    check_sample(claude.version, "print_invalid_grant.txt", run.stdout, lambda data: data)
    assert set(token_server.refresh_tokens_seen) == {tokens.refresh}
    # Seen racing within the run: sometimes the old access token is still sent once, in
    # parallel with the failed refresh; the user sees the same line either way.
    assert {c.token for c in fake_api.messages_calls()} <= {tokens.access}
    stored = claude_home.read_credentials()
    if claude.version in NO_REFRESH_ON_401:
        assert stored == written  # seen with 2.1.87: it leaves the file as it was
        return
    assert stored["claudeAiOauth"] == {
        **written["claudeAiOauth"], "accessToken": "", "refreshToken": "", "expiresAt": 0
    }
    assert stored["mcpOAuth"] == written["mcpOAuth"]


@pytest.mark.parametrize(
    "answer",
    [
        lambda server, request: Reply(500, {"error": "server_error"}),
        # A new pair without `scope`: Claude Code throws it away (the token server has rotated
        # the refresh token by then, so in reality the stored one is now spent).
        ok(scope=None),
    ],
    ids=["server-error", "no-scope-in-answer"],
)
def test_a_failed_refresh_keeps_the_file_and_spends_the_token_again(
    claude: ClaudeBinary,
    claude_home: ClaudeHome,
    fake_api: FakeAnthropicAPI,
    token_server: TokenServer,
    oauth_proxy: OAuthProxy,
    answer: Callable[[TokenServer, Request], Reply],
) -> None:
    token_server.default = answer
    tokens, written = _expired_login(claude_home)
    fake_api.expire(tokens.access)
    run = _run_print(claude, claude_home, oauth_proxy)
    assert (run.returncode, run.err) == (1, "")
    assert run.out.startswith("Failed to authenticate. API Error: 401"), run.out
    assert EXPIRED_MESSAGE in run.out
    # Seen: 3 to 5 refresh calls in one run, all with the same refresh token (at start, after
    # each 401, from the profile and MCP steps), never a new one.
    seen = token_server.refresh_tokens_seen
    print(f"{len(seen)} refresh calls with the same refresh token")
    assert set(seen) == {tokens.refresh}
    assert {c.token for c in fake_api.messages_calls()} == {tokens.access}
    assert claude_home.read_credentials() == written
