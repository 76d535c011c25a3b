"""The push with the real Claude Code as the guest's binary (issue 26), once per version of the
matrix: the token service as the real one (a rotation revokes the old access token at once:
TokenFamilies, and the fake API asks it before answering), the owner behind the real sshd with
docs/guests.md's forced command (`token --json --for-guest`), the guest's keeper holding its push
session. A guest TUI session is open, the owner rotates, and the guest's next prompt, 3 s later,
is answered with the new token: no request of the guest's ever meets a revoked token.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from claude_wrap_testing.fakeapi import FakeAnthropicAPI
from claude_wrap_testing.isolation import TUI_READY, ClaudeHome
from claude_wrap_testing.sshd import Sshd
from claude_wrap_testing.tokenserver import TokenFamilies, TokenServer
from claude_wrap_testing.wrapped import Shim

from .test_wrapped_watch import wait_for

FORCED = "token --json --for-guest"


class Owner:
    """The owner's HOME and login, and the forced command its authorized_keys line runs."""

    def __init__(self, root: Path, tokens: TokenServer, api_url: str) -> None:
        self.home = ClaudeHome(root, api_url, tokens)
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
        # `env` without -i: sshd's SSH_ORIGINAL_COMMAND (what the guest asked) must reach it.
        self.command = f"env {env} {sys.executable} -m claude_wrap {FORCED}"

    def token(self) -> str:
        doc = json.loads(self.home.credentials_path.read_text())
        return str(doc["claudeAiOauth"]["accessToken"])

    def wrap(self, *args: str) -> None:
        done = subprocess.run(
            [sys.executable, "-m", "claude_wrap", *args], env=self.env, capture_output=True,
            timeout=60, check=False,
        )
        assert done.returncode == 0, done.stderr


@pytest.fixture
def guest_tokens() -> Iterator[TokenServer]:
    with TokenServer("g") as server:
        yield server


def test_a_guest_tui_prompt_right_after_the_owners_rotation_is_answered(
    tmp_path_factory: pytest.TempPathFactory,
    shim: Shim,
    claude_home: ClaudeHome,
    fake_api: FakeAnthropicAPI,
    token_server: TokenServer,
    guest_tokens: TokenServer,
) -> None:
    families = TokenFamilies()
    token_server.default = families
    fake_api.check_token = families.access_problem
    fake_api.answer = "pong"
    # Outside the guest's folder (claude_home.root), which is scanned for refresh tokens.
    owner = Owner(tmp_path_factory.mktemp("owner") / "owner", token_server, fake_api.url)
    owner.home.credentials_path.write_text(json.dumps({"claudeAiOauth": families.login()}))
    owner.home.credentials_path.chmod(0o600)
    first = owner.token()
    with Sshd(tmp_path_factory.mktemp("sshd"), owner.command) as sshd:
        env = shim.env(
            claude_home, guest_tokens.url, CLAUDE_WRAP_GUEST="ssh:owner",
            CLAUDE_WRAP_GUEST_SSH=sshd.ssh_command, CLAUDE_WRAP_GUEST_TIMEOUT="60",
        )
        keeper = subprocess.Popen(
            [sys.executable, "-m", "claude_wrap", "keep", "--watch"], env=env,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )
        term = None
        try:
            wait_for(
                lambda: claude_home.credentials_path.exists()
                and json.loads(claude_home.credentials_path.read_text())["claudeAiOauth"].get(
                    "accessToken") == first,
                "the guest keeper's first token",
            )
            term = shim.spawn(claude_home, env=env)
            term.expect(TUI_READY, timeout=90)
            owner.wrap("refresh", "--force")  # the owner's login rotates: `first` is revoked
            new = owner.token()
            assert families.access_problem(first, count=False) is not None
            time.sleep(3)
            term.send("hello")
            term.expect("hello", timeout=30)
            term.send("\r")
            term.expect("pong", timeout=60)
            assert fake_api.tokens_used()[-1] == new
            assert families.rejected_access == 0  # no request of the guest met a dead token
            assert families.refreshes == 1
        finally:
            if term is not None:
                term.close(force=True)
            keeper.terminate()
            out, err = keeper.communicate(timeout=30)
    assert b"new access token pushed by the owner" in out, (out, err)
    assert guest_tokens.requests == []
    assert "refreshToken" not in json.loads(claude_home.credentials_path.read_text())[
        "claudeAiOauth"]


@pytest.mark.parametrize("form", ["text", "stream-json"])
def test_a_guest_run_that_meets_a_revoked_token_pulls_at_once_and_is_answered(
    tmp_path_factory: pytest.TempPathFactory,
    shim: Shim,
    claude_home: ClaudeHome,
    fake_api: FakeAnthropicAPI,
    token_server: TokenServer,
    guest_tokens: TokenServer,
    form: str,
) -> None:
    """No keeper, so no push: the guest holds a token the owner's rotation revoked (once as a
    401 "OAuth access token has been revoked.", once as a 403 permission_error, as the real
    service answers either). The shim sees the refusal in claude's output, pulls from the owner
    at once (never refreshes: the guest's own token endpoint is never asked), and the run is
    retried and answered."""
    families = TokenFamilies()
    token_server.default = families
    fake_api.check_token = families.access_problem
    fake_api.answer = "pong"
    owner = Owner(tmp_path_factory.mktemp("owner") / "owner", token_server, fake_api.url)
    owner.home.credentials_path.write_text(json.dumps({"claudeAiOauth": families.login()}))
    owner.home.credentials_path.chmod(0o600)
    args: tuple[str, ...] = ("--print", "ping")
    if form == "stream-json":
        args = (*args, "--output-format", "stream-json", "--verbose")
    with Sshd(tmp_path_factory.mktemp("sshd"), owner.command) as sshd:
        env = shim.env(
            claude_home, guest_tokens.url, CLAUDE_WRAP_GUEST="ssh:owner",
            CLAUDE_WRAP_GUEST_SSH=sshd.ssh_command, CLAUDE_WRAP_GUEST_TIMEOUT="60",
        )
        problems = set()
        for _ in range(2):
            run = shim.run(claude_home, *args, env=env)
            assert run.returncode == 0, (run.out, run.err)
            held = json.loads(claude_home.credentials_path.read_text())["claudeAiOauth"][
                "accessToken"]
            owner.wrap("refresh", "--force")  # `held` is revoked now
            problems.add(families.access_problem(held, count=False))
            rejected = families.rejected_access
            run = shim.run(claude_home, *args, env=env)
            assert run.returncode == 0, (run.out, run.err)
            assert "pong" in run.out
            assert families.rejected_access > rejected  # it did meet the revoked token
            assert fake_api.tokens_used()[-1] == owner.token()
        assert problems == {"access_revoked", "revoked_403"}
    assert families.refreshes == 2  # the owner's two, and no other
    assert guest_tokens.requests == []


def test_a_guest_tui_that_meets_a_revoked_token_pulls_at_once(
    tmp_path_factory: pytest.TempPathFactory,
    shim: Shim,
    claude_home: ClaudeHome,
    fake_api: FakeAnthropicAPI,
    token_server: TokenServer,
    guest_tokens: TokenServer,
) -> None:
    """No keeper, so no push: a guest TUI's prompt after the owner's rotation meets the revoked
    token (a 401 after one rotation, a 403 after the next); the shim sees the refusal on the
    screen, pulls at once (never refreshes), and the prompt sent again is answered."""
    families = TokenFamilies()
    token_server.default = families
    fake_api.check_token = families.access_problem
    fake_api.answer = "pong"
    owner = Owner(tmp_path_factory.mktemp("owner") / "owner", token_server, fake_api.url)
    owner.home.credentials_path.write_text(json.dumps({"claudeAiOauth": families.login()}))
    owner.home.credentials_path.chmod(0o600)

    def held() -> str:
        return str(json.loads(claude_home.credentials_path.read_text())["claudeAiOauth"][
            "accessToken"])

    with Sshd(tmp_path_factory.mktemp("sshd"), owner.command) as sshd:
        env = shim.env(
            claude_home, guest_tokens.url, CLAUDE_WRAP_GUEST="ssh:owner",
            CLAUDE_WRAP_GUEST_SSH=sshd.ssh_command, CLAUDE_WRAP_GUEST_TIMEOUT="60",
            CLAUDE_WRAP_GUEST_PERIOD="2",  # a second refusal may be pulled for 2 s later
        )
        term = shim.spawn(claude_home, env=env)
        try:
            term.expect(TUI_READY, timeout=90)
            problems = set()
            for n in range(2):
                fake_api.answer = f"pong-{n}"  # an earlier answer redrawn is not this one
                before = held()
                owner.wrap("refresh", "--force")  # `before` is revoked now
                problems.add(families.access_problem(before, count=False))
                new = owner.token()
                term.send(f"first{n}")
                term.expect(f"first{n}", timeout=30)
                term.send("\r")
                wait_for(lambda: held() == new, "the guest's pull after the refusal", 60)  # noqa: B023
                time.sleep(1)
                term.send(f"again{n}")
                term.expect(f"again{n}", timeout=30)
                term.send("\r")
                term.expect(f"pong-{n}", timeout=60)
                assert fake_api.tokens_used()[-1] == new
            assert problems == {"access_revoked", "revoked_403"}
        finally:
            term.close(force=True)
    assert families.refreshes == 2
    assert guest_tokens.requests == []
