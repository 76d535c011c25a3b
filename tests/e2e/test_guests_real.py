"""The real Claude Code on a guest (issue 15): its login borrowed from an owner over a real sshd
on 127.0.0.1 (the pytest process is in the loopback-only namespace already), with docs/guests.md's
forced-command line. The guest's file holds an access token and the scopes, no refresh token;
the owner alone refreshes, at the test token server; the guest's own token endpoint must never
be asked. Runs once per version of the matrix.
"""

from __future__ import annotations

import re
import shlex
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from claude_wrap_testing.fakeapi import FakeAnthropicAPI
from claude_wrap_testing.isolation import ClaudeHome, new_tokens, now_ms
from claude_wrap_testing.sshd import Sshd
from claude_wrap_testing.tokenserver import TokenServer, ok
from claude_wrap_testing.wrapped import Shim

from .test_wrapped_watch import wait_for

MINUTE_MS = 60_000
# The TUI is ready for a prompt: 2.1.87 and 2.1.197 draw "? for shortcuts", 2.1.332 does not but
# names its agents (the same pattern as the matrix branch's isolation.TUI_READY).
TUI_READY = re.compile(rb"shortcuts|agents")


class Owner:
    """The owner's HOME, login and the forced command its authorized_keys line runs."""

    def __init__(self, root: Path, tokens: TokenServer, api_url: str) -> None:
        self.home = ClaudeHome(root, api_url, tokens)
        self.tokens = tokens
        self.env = {
            "HOME": str(self.home.home),
            "PATH": "/usr/bin:/bin",
            "CLAUDE_CONFIG_DIR": str(self.home.config_dir),
            "XDG_STATE_HOME": str(root / "state"),
            "CLAUDE_WRAP_LOG_FILE": str(root / "claude-wrap.log"),
            "CLAUDE_WRAP_TOKEN_URL": tokens.url,
            "CLAUDE_WRAP_LOCK_TIMEOUT": "60",
        }
        env = " ".join(f"{k}={shlex.quote(v)}" for k, v in self.env.items())
        self.command = f"env -i {env} {sys.executable} -m claude_wrap token --json --min-valid 1200"

    def wrap(self, *args: str) -> None:
        import subprocess

        done = subprocess.run(
            [sys.executable, "-m", "claude_wrap", *args], env=self.env, capture_output=True,
            timeout=60, check=False,
        )
        assert done.returncode == 0, done.stderr


@pytest.fixture
def guest_tokens() -> Iterator[TokenServer]:
    with TokenServer("g") as server:
        yield server


def guest_env(shim: Shim, home: ClaudeHome, sshd: Sshd, url: str, **extra: str) -> dict[str, str]:
    return shim.env(
        home, url, CLAUDE_WRAP_GUEST="ssh:owner", CLAUDE_WRAP_GUEST_SSH=sshd.ssh_command,
        CLAUDE_WRAP_GUEST_TIMEOUT="120", **extra,
    )


def test_a_guest_over_ssh_answers_print_with_the_owners_token(
    tmp_path_factory: pytest.TempPathFactory,
    shim: Shim,
    claude_home: ClaudeHome,
    fake_api: FakeAnthropicAPI,
    token_server: TokenServer,
    guest_tokens: TokenServer,
) -> None:
    fake_api.answer = "pong"
    # Outside the guest's folder (claude_home.root), which is scanned for refresh tokens.
    tmp_path = tmp_path_factory.mktemp("owner")
    owner = Owner(tmp_path / "owner", token_server, fake_api.url)
    tokens = new_tokens("owner")
    owner.home.write_credentials(tokens, expires_at=now_ms() + MINUTE_MS)  # due: refreshed
    with Sshd(tmp_path / "sshd", owner.command) as sshd:
        env = guest_env(shim, claude_home, sshd, guest_tokens.url)
        run = shim.run(claude_home, "--print", "ping", env=env)
        assert run.returncode == 0, (run.out, run.err)
        assert "pong" in run.out
        [issued] = token_server.issued
        assert fake_api.tokens_used()[-1] == issued["access_token"]
        stored = claude_home.read_credentials()["claudeAiOauth"]
        assert stored["accessToken"] == issued["access_token"]
        assert "refreshToken" not in stored
        assert sshd.logins() == 1
    assert guest_tokens.requests == []
    secrets = {tokens.refresh, issued["refresh_token"]}
    for path in claude_home.root.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert not [s for s in secrets if s.encode() in data], path


def test_a_guest_tui_rolls_over_when_the_owner_rotates_mid_session(
    tmp_path_factory: pytest.TempPathFactory,
    shim: Shim,
    claude_home: ClaudeHome,
    fake_api: FakeAnthropicAPI,
    token_server: TokenServer,
    guest_tokens: TokenServer,
) -> None:
    """The guest's token is due all along (its window is longer than the token's life), so its
    session keeps pulling; the owner rotates; the session rolls over to the new token without a
    restart, and the next prompt, with the old token refused, is answered with the new one."""
    fake_api.answer = "pong"
    # Outside the guest's folder (claude_home.root), which is scanned for refresh tokens.
    tmp_path = tmp_path_factory.mktemp("owner")
    owner = Owner(tmp_path / "owner", token_server, fake_api.url)
    first = new_tokens("owner")
    # Past the forced command's --min-valid 1200 and the owner's 600 s window (token --min-valid
    # counts to the owner's next rotation): the first pull does not rotate.
    owner.home.write_credentials(first, expires_at=now_ms() + 45 * MINUTE_MS)
    token_server.default = ok(expires_in=8 * 3600)
    with Sshd(tmp_path / "sshd", owner.command) as sshd:
        env = guest_env(
            shim, claude_home, sshd, guest_tokens.url,
            CLAUDE_WRAP_REFRESH_WINDOW="3000", CLAUDE_WRAP_GUEST_PERIOD="1",
        )
        term = shim.spawn(claude_home, env=env)
        try:
            term.expect(TUI_READY, timeout=90)
            assert claude_home.read_credentials()["claudeAiOauth"]["accessToken"] == first.access
            owner.wrap("refresh", "--force")  # the owner's login rotates
            [issued] = token_server.issued
            new = issued["access_token"]
            wait_for(
                lambda: claude_home.read_credentials()["claudeAiOauth"]["accessToken"] == new,
                "the guest session's pull of the rotated token",
            )
            fake_api.expire(first.access)
            term.send("hello")
            term.expect("hello", timeout=30)
            term.send("\r")
            term.expect("pong", timeout=60)
            assert fake_api.tokens_used()[-1] == new
            # How a session is left differs between versions and is not this test's point.
        finally:
            term.close(force=True)
    assert len(token_server.requests) == 1
    assert guest_tokens.requests == []
    assert "refreshToken" not in claude_home.read_credentials()["claudeAiOauth"]
