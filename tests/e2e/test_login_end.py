"""The real binary behind the shim when the login ends within a day: claude's own output is
untouched, the shim adds one stderr line, and only once within the hour."""

from __future__ import annotations

from claude_wrap_testing.fakeapi import FakeAnthropicAPI
from claude_wrap_testing.isolation import ClaudeHome, new_tokens, now_ms
from claude_wrap_testing.tokenserver import TokenServer
from claude_wrap_testing.wrapped import Shim

HOUR_MS = 3_600_000


def test_the_login_ends_within_a_day(
    shim: Shim, claude_home: ClaudeHome, fake_api: FakeAnthropicAPI, token_server: TokenServer
) -> None:
    fake_api.answer = "answered while the login lasts"
    tokens = new_tokens()
    ends = now_ms() + 5 * HOUR_MS
    claude_home.write_credentials(tokens, oauth_extra={"refreshTokenExpiresAt": ends})
    env = shim.env(claude_home, token_server.url)
    first = shim.run(claude_home, "--print", input=b"hello\n", env=env)
    second = shim.run(claude_home, "--print", input=b"hello\n", env=env)
    for run in (first, second):
        assert run.returncode == 0, run.err
        assert run.out == fake_api.answer + "\n"
    # 2.1.332 warns of the login's end itself (stderr, `Warning: this …`): that line is its own,
    # passed through untouched; ours is the one `claude-wrap:` line, and only on the first run.
    ours = [x for x in first.err.splitlines() if x.startswith("claude-wrap:")]
    assert len(ours) == 1, first.err
    [line] = ours
    assert line.startswith("claude-wrap: warning: this login ends in 4h")
    assert line.endswith("run `claude /login` before then")
    theirs = [x for x in first.err.splitlines() if not x.startswith("claude-wrap:")]
    assert second.err.splitlines() == theirs  # the binary's own lines, nothing of ours again
    assert token_server.requests == []
    assert claude_home.read_credentials()["claudeAiOauth"]["refreshTokenExpiresAt"] == ends
