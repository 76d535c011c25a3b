"""The claude-wrap shim in front of the real `claude` (issue 5, part 2).

Every run here goes through the shim installed by `claude-wrap install`, which finds the pinned
real binary after itself on PATH. The shim's own refresh goes to the test token server on
loopback (CLAUDE_WRAP_TOKEN_URL); where a case needs the real binary's own refresh to be
reachable too, it goes through the loopback CONNECT proxy to the same server. The fake API
answers only tokens it was not told to expire, so an answer proves which token was sent.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from claude_wrap_testing.fakeapi import MODEL, FakeAnthropicAPI
from claude_wrap_testing.isolation import (
    ClaudeBinary,
    ClaudeHome,
    Run,
    TokenPair,
    new_tokens,
    now_ms,
)
from claude_wrap_testing.tlsproxy import OAuthProxy
from claude_wrap_testing.tokenserver import DEFAULT_SCOPE, TokenFamilies, TokenServer, invalid_grant
from claude_wrap_testing.wrapped import Shim, start

LOGGED_OUT = "Not logged in · Please run /login"
MINUTE_MS = 60_000
# What real files carry besides the fields the tests set (docs/protocol.md section 1).
OAUTH_EXTRA = {"clientId": "9d1c250a-e61b-44d9-88ed-5944d1962f5e",
               "refreshTokenExpiresAt": 1_900_000_000_000}

# The logins the shim must refresh before the real binary reads them. (Stripped of its scopes
# with a token good beyond the refresh window, a login is repaired locally, no token request:
# test_repair_real.py.) 8 minutes: due for claude-wrap (10), not for Claude Code (5), whose
# own refresh attempt (the proxy is off) would leave its lock folder in the shim's way.
LOGINS: dict[str, dict[str, Any]] = {
    "no-scopes": {"scopes": None, "expires_at_in_ms": 8 * MINUTE_MS},  # stripped, and due
    "expired": {"expires_at_in_ms": -MINUTE_MS},
    "expires-in-2-min": {"expires_at_in_ms": 2 * MINUTE_MS},  # inside Claude Code's 5-min buffer
}


def write_login(home: ClaudeHome, kind: str) -> tuple[TokenPair, dict[str, Any]]:
    spec = dict(LOGINS[kind])
    offset = spec.pop("expires_at_in_ms", None)
    if offset is not None:
        spec["expires_at"] = now_ms() + offset
    tokens = new_tokens()
    return tokens, home.write_credentials(tokens, oauth_extra=OAUTH_EXTRA, **spec)


def assert_repaired(
    home: ClaudeHome, written: dict[str, Any], issued: dict[str, Any], started_ms: int
) -> None:
    """The file holds the issued login with scopes, and every other field it had."""
    stored = home.read_credentials()
    oauth = stored["claudeAiOauth"]
    assert oauth["accessToken"] == issued["access_token"]
    assert oauth["refreshToken"] == issued["refresh_token"]
    assert oauth["scopes"] == DEFAULT_SCOPE.split(" ")
    assert oauth["expiresAt"] >= started_ms + issued["expires_in"] * 1000
    kept = {k: v for k, v in written["claudeAiOauth"].items()
            if k not in ("accessToken", "refreshToken", "expiresAt", "scopes")}
    assert kept == {"subscriptionType": "max", "rateLimitTier": "default_claude_max_20x",
                    **OAUTH_EXTRA}
    assert {k: oauth[k] for k in kept} == kept
    assert {k: v for k, v in stored.items() if k != "claudeAiOauth"} == {
        k: v for k, v in written.items() if k != "claudeAiOauth"
    }
    assert (home.credentials_path.stat().st_mode & 0o777) == 0o600


# --- claude auth status -----------------------------------------------------------------------


def test_auth_status_logged_out_directly_logged_in_through_the_shim(
    claude: ClaudeBinary, shim: Shim, claude_home: ClaudeHome, token_server: TokenServer
) -> None:
    tokens, written = write_login(claude_home, "no-scopes")
    direct = claude.run(claude_home, "auth", "status")
    assert direct.returncode == 1
    assert json.loads(direct.stdout)["loggedIn"] is False
    assert claude_home.read_credentials() == written

    started = now_ms()
    run = shim.run(claude_home, "auth", "status", env=shim.env(claude_home, token_server.url))
    assert (run.returncode, run.err) == (0, "")
    status = json.loads(run.stdout)
    assert (status["loggedIn"], status["authMethod"], status["subscriptionType"]) == (
        True, "claude.ai", "max"
    )
    assert token_server.refresh_tokens_seen == [tokens.refresh]
    [issued] = token_server.issued
    assert_repaired(claude_home, written, issued, started)


# --- claude --print, in every output format ---------------------------------------------------


def check_text(run: Run, answer: str) -> None:
    assert run.out == answer + "\n"


def check_json(run: Run, answer: str) -> None:
    [line] = run.out.splitlines()
    result = json.loads(line)
    assert (result["type"], result["is_error"], result["result"]) == ("result", False, answer)


def check_stream_json(run: Run, answer: str) -> None:
    lines = [json.loads(line) for line in run.out.splitlines()]
    assert (lines[0]["type"], lines[0]["subtype"]) == ("system", "init")
    assistants = [line for line in lines if line["type"] == "assistant"]
    assert [a["message"]["model"] for a in assistants] == [MODEL]
    assert all("error" not in a for a in assistants)
    assert (lines[-1]["type"], lines[-1]["is_error"], lines[-1]["result"]) == (
        "result", False, answer
    )


FORMATS = {
    "text": ((), check_text),
    "json": (("--output-format", "json"), check_json),
    "stream-json": (("--output-format", "stream-json", "--verbose"), check_stream_json),
}


@pytest.mark.parametrize("output", list(FORMATS))
@pytest.mark.parametrize("kind", list(LOGINS))
def test_print_through_the_shim_answers_with_the_refreshed_token(
    shim: Shim,
    claude_home: ClaudeHome,
    fake_api: FakeAnthropicAPI,
    token_server: TokenServer,
    kind: str,
    output: str,
) -> None:
    fake_api.answer = f"answered through the shim ({kind}, {output})"
    tokens, written = write_login(claude_home, kind)
    fake_api.expire(tokens.access)  # only the refreshed token gets an answer
    args, check = FORMATS[output]
    started = now_ms()
    # No proxy: the real binary cannot refresh by itself here, only the shim can.
    run = shim.run(claude_home, "--print", *args, input=b"hello\n",
                   env=shim.env(claude_home, token_server.url))
    assert (run.returncode, run.err) == (0, ""), run.out
    check(run, fake_api.answer)
    assert token_server.refresh_tokens_seen == [tokens.refresh]
    [issued] = token_server.issued
    assert fake_api.tokens_used() == [issued["access_token"]]
    assert_repaired(claude_home, written, issued, started)


# --- invalid_grant: the shim steps aside ------------------------------------------------------


@pytest.mark.parametrize("kind", ["no-scopes", "expired"])
def test_invalid_grant_leaves_the_file_and_claude_speaks_for_itself(
    claude: ClaudeBinary,
    shim: Shim,
    claude_home: ClaudeHome,
    fake_api: FakeAnthropicAPI,
    token_server: TokenServer,
    kind: str,
) -> None:
    token_server.default = lambda server, request: invalid_grant()
    tokens, _ = write_login(claude_home, kind)
    fake_api.expire(tokens.access)
    before = claude_home.credentials_path.read_bytes()
    # The real binary alone first (its own refresh cannot leave the namespace: no proxy).
    direct = claude.run(claude_home, "--print", input=b"hello\n")
    assert direct.returncode == 1
    assert claude_home.credentials_path.read_bytes() == before
    calls_direct = len(fake_api.messages_calls())

    run = shim.run(claude_home, "--print", input=b"hello\n",
                   env=shim.env(claude_home, token_server.url))
    assert (run.returncode, run.out) == (direct.returncode, direct.out)
    # The pre-flight's one line (and, with the output watcher, its line after claude failed).
    said = run.err.splitlines()
    assert said and all(line.startswith("claude-wrap: ") for line in said), run.err
    assert "invalid_grant" in said[0] and "/login" in said[0]
    assert tokens.refresh not in run.err and tokens.access not in run.err
    assert token_server.refresh_tokens_seen == [tokens.refresh]  # asked once, never again
    assert claude_home.credentials_path.read_bytes() == before
    # The real binary then ran as it did alone, with the old token.
    calls = fake_api.messages_calls()[calls_direct:]
    assert {c.token for c in calls} <= {tokens.access}
    if kind == "no-scopes":
        assert run.out == LOGGED_OUT + "\n"
        assert calls == []


# --- the shim and the real binary sharing one expired login ------------------------------------


RUNS = 8


@pytest.mark.parametrize(
    ("runs", "direct"), [(RUNS, 0), (4, 2)], ids=["8-through-the-shim", "2-shim-2-direct"]
)
def test_parallel_runs_make_one_token_request(
    claude: ClaudeBinary,
    shim: Shim,
    claude_home: ClaudeHome,
    fake_api: FakeAnthropicAPI,
    token_server: TokenServer,
    oauth_proxy: OAuthProxy,
    runs: int,
    direct: int,
) -> None:
    # Single-use refresh tokens: a second spend of one would get invalid_grant (and revoke all).
    families = TokenFamilies(tag="par")
    token_server.default = families
    login = families.login()
    old_access = login["accessToken"]
    login["expiresAt"] = now_ms() - MINUTE_MS
    claude_home.write_credentials(
        TokenPair(old_access, login["refreshToken"]), expires_at=login["expiresAt"],
        oauth_extra=OAUTH_EXTRA,
    )
    fake_api.expire(old_access)
    fake_api.answer = "one of many"
    # Both can refresh: the shim at the token server, the real binary through the proxy.
    env = shim.env(claude_home, token_server.url, **oauth_proxy.env())
    # `direct` of them run the real binary itself (PATH without the shim), in the same login.
    direct_env = claude_home.env(**oauth_proxy.env())
    started = time.monotonic()
    children = [
        shim.popen(claude_home, "--print", env=env, input=b"hello\n") if n >= direct
        else start(claude_home, [str(claude.path), "--print"], env=direct_env, input=b"hello\n")
        for n in range(runs)
    ]
    results = []
    for child in children:
        out, err = child.communicate(timeout=240)
        results.append((child.returncode, out.decode(), err.decode()))
    claude.note_time(f"--print x{runs} in parallel ({direct} direct)", time.monotonic() - started)
    assert results == [(0, "one of many\n", "")] * runs
    assert len(token_server.requests) == 1
    assert (families.refreshes, families.invalid_grants) == (1, 0)
    new_access = claude_home.read_credentials()["claudeAiOauth"]["accessToken"]
    assert new_access != old_access
    calls = [c.token for c in fake_api.messages_calls()]
    assert len(calls) >= runs and set(calls) == {new_access}
    if not direct:
        # The shim refreshed first, so no real binary needed its own refresh (Claude Code alone
        # also makes one request here, under its own locks: this is what tells them apart).
        assert [r.path for r in oauth_proxy.requests if r.method == "POST"] == []
