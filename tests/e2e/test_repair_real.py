"""A login claude-wrap has never seen, stripped of its scopes by another tool while its access
token is good, in front of the real Claude Code of every release of the matrix (issue 28).

The shim must put back the scopes that release asks for in its own refresh, with no token
request, and the real binary must then answer with the very token it had: the fake API answers
only the tokens it knows, and the token server counts every request.
"""

from __future__ import annotations

import json

import pytest

from claude_wrap.config import versions
from claude_wrap_testing.fakeapi import FakeAnthropicAPI
from claude_wrap_testing.isolation import ClaudeHome, new_tokens
from claude_wrap_testing.tokenserver import TokenServer
from claude_wrap_testing.wrapped import Shim

from .test_wrapped import FORMATS

BASE = ["user:profile", "user:inference", "user:sessions:claude_code", "user:mcp_servers",
        "user:file_upload"]
# The fields another tool's rewrite may leave, and one no release writes yet: all kept.
EXTRA = {"clientId": "9d1c250a-e61b-44d9-88ed-5944d1962f5e", "someFutureField": {"a": [1]}}


def release_scopes(version: str) -> list[str]:
    """What the release asks for in its own refresh (docs/protocol.md sections 9 and 10, measured
    through the proxy: user:plugins from 2.1.332 on, not by 2.1.197 and older)."""
    newer = (versions.parse(version) or ()) > (2, 1, 197)
    return [*BASE, "user:plugins"] if newer else BASE


def stripped(home: ClaudeHome) -> dict[str, object]:
    """A good login as a lock-less refresher leaves it: no scopes; claude-wrap has no memory of
    it (a fresh state folder per test)."""
    return home.write_credentials(new_tokens(), scopes=None, oauth_extra=EXTRA)


@pytest.mark.capability("stripped login never seen: local repair ({output})")
@pytest.mark.parametrize("output", list(FORMATS))
def test_a_stripped_login_never_seen_is_answered_with_no_token_request(
    shim: Shim,
    claude_version: str,
    claude_home: ClaudeHome,
    fake_api: FakeAnthropicAPI,
    token_server: TokenServer,
    output: str,
) -> None:
    fake_api.answer = f"repaired locally ({output})"
    written = stripped(claude_home)
    access = written["claudeAiOauth"]["accessToken"]  # type: ignore[index]
    args, check = FORMATS[output]
    run = shim.run(claude_home, "--print", *args, input=b"hello\n",
                   env=shim.env(claude_home, token_server.url))
    assert (run.returncode, run.err) == (0, ""), run.out
    check(run, fake_api.answer)
    assert token_server.requests == []
    assert set(fake_api.tokens_used()) == {access}  # the very token it had
    stored = claude_home.read_credentials()
    oauth = stored["claudeAiOauth"]
    assert oauth["scopes"] == release_scopes(claude_version)
    assert oauth["accessToken"] == access
    assert {k: oauth[k] for k in EXTRA} == EXTRA
    assert (oauth["subscriptionType"], oauth["rateLimitTier"]) == ("max", "default_claude_max_20x")
    assert {k: v for k, v in stored.items() if k != "claudeAiOauth"} == {
        k: v for k, v in written.items() if k != "claudeAiOauth"
    }
    assert (claude_home.credentials_path.stat().st_mode & 0o777) == 0o600


@pytest.mark.capability("stripped login never seen: local repair (auth status)")
def test_auth_status_of_a_stripped_login_never_seen_is_logged_in_through_the_shim(
    shim: Shim, claude_home: ClaudeHome, token_server: TokenServer
) -> None:
    stripped(claude_home)
    run = shim.run(claude_home, "auth", "status", env=shim.env(claude_home, token_server.url))
    assert (run.returncode, run.err) == (0, "")
    status = json.loads(run.stdout)
    assert (status["loggedIn"], status["authMethod"]) == (True, "claude.ai")
    assert token_server.requests == []
