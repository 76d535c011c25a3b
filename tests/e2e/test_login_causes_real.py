"""The real claude through the shim, on the faithful token service, when another copy of its
login rotated it: `claude-wrap status` says why the login died (issue 26, item 5).

Another machine holds a copy of this login and refreshes it: the service revokes our access
token at once. What the real binary does then is its own (seen, 2.1.332 and 2.1.337: it takes
the refused token for an expired one, spends the stored refresh token itself through the proxy,
meets invalid_grant and blanks the file; 2.1.87 prints the API's refusal and leaves the file,
and the shim's repair then sends the token once, after its wait; its 403 form, "Your account
does not have access to Claude", is one the watch knows since issue 26). Either way the token that
died is one claude-wrap never sent, and status puts the death down to a copy elsewhere.
"""

from __future__ import annotations

import subprocess
import sys
import time
from typing import Any

import pytest

from claude_wrap_testing.fakeapi import FakeAnthropicAPI
from claude_wrap_testing.isolation import ClaudeBinary, ClaudeHome, TokenPair
from claude_wrap_testing.tlsproxy import OAuthProxy
from claude_wrap_testing.tokenserver import Request, TokenFamilies, TokenServer
from claude_wrap_testing.wrapped import REPO, Shim


def _wrap(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "claude_wrap", *args], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=60, check=False)


def _spend(families: TokenFamilies, server: TokenServer, refresh: str, who: str) -> Any:
    spend = Request("/v1/oauth/token", {"user-agent": who}, {"refresh_token": refresh}, b"",
                    time.time())
    return families(server, spend).body


@pytest.mark.parametrize("answer", ["access_revoked", "revoked_403"])
def test_a_login_rotated_elsewhere_is_said_to_be_spent_by_a_copy(
    claude: ClaudeBinary,
    shim: Shim,
    claude_home: ClaudeHome,
    fake_api: FakeAnthropicAPI,
    token_server: TokenServer,
    oauth_proxy: OAuthProxy,
    answer: str,
) -> None:
    families = TokenFamilies(tag="die")
    assert not families.lenient
    token_server.default = families
    fake_api.check_token = families.access_problem
    login: dict[str, Any] = families.login()
    if answer == "access_revoked":
        # The service answers a superseded token by its serial number (tokenserver.py): a login
        # rotated once more (before this test's story starts) gets the 401.
        body = _spend(families, token_server, login["refreshToken"], "earlier")
        login.update(accessToken=body["access_token"], refreshToken=body["refresh_token"])
    claude_home.write_credentials(TokenPair(login["accessToken"], login["refreshToken"]),
                                  expires_at=login["expiresAt"])
    env = shim.env(claude_home, token_server.url, **oauth_proxy.env())
    # claude-wrap judges the login once (as any run through the shim does), then the copy on
    # the other machine rotates it: not through our token server's log, not claude-wrap's.
    assert _wrap(env, "status").returncode == 0
    _spend(families, token_server, login["refreshToken"], "elsewhere")
    assert families.access_problem(login["accessToken"], count=False) == answer

    run = shim.run(claude_home, "--print", env=env, input=b"hello\n")
    assert run.returncode == 1, (run.out, run.err)
    # Whoever sent it, the dead token went out once (a replay: the service ended the family).
    assert token_server.refresh_tokens_seen == [login["refreshToken"]]
    assert families.replays and families.revoked

    status = _wrap(env, "status")
    assert status.returncode == 1, status.stdout
    died = [x for x in status.stdout.splitlines() if x.startswith("died: ")]
    assert len(died) == 1, status.stdout
    assert died[0].startswith(
        "died: another machine or program spent this login's refresh token ("), died
    assert "make the other one a guest of this machine (docs/guests.md)" in died[0]
    log = _wrap(env, "log").stdout
    assert "FAILED: " in log and "another machine or program spent this login's" in log, log
    [request] = token_server.requests
    who = "claude" if request.headers.get("x-relayed-by") else "claude-wrap"
    print(f"\n{claude.version}: the dead token was sent by {who}; {died[0]}")
