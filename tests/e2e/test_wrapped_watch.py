"""The shim's fallback against the real `claude` (issue 5, part 2; the output watcher of issue 4).

The pre-flight repairs what it can see; these make the login break after it: a stand-in for the
real binary (CLAUDE_WRAP_REAL_CLAUDE, see wrapped.STRIP_ONCE) takes the scopes out of the file
on its first run, after the pre-flight and before the real binary reads it. A real process
racing, no mocks. The shim must notice claude's login failure in its output and repair it:
headless runs are retried and the consumer sees one clean answer; the TUI is repaired in place
and the next prompt works without a restart.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import pytest

from claude_wrap_testing.fakeapi import FakeAnthropicAPI
from claude_wrap_testing.isolation import TUI_READY, ClaudeBinary, ClaudeHome, new_tokens, quit_tui
from claude_wrap_testing.tokenserver import TokenServer
from claude_wrap_testing.wrapped import Shim, strip_scopes_once

from .test_binary_direct import TUI_LOGGED_OUT
from .test_wrapped import FORMATS, OAUTH_EXTRA, assert_repaired


def wait_for(predicate: Callable[[], bool], what: str, limit: float = 60) -> None:
    """Polls `predicate` (a condition, not a timing assertion: the limit only bounds a hang)."""
    deadline = time.monotonic() + limit
    while not predicate():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.05)


def stripped_setup(
    claude: ClaudeBinary, home: ClaudeHome, token_server: TokenServer, shim: Shim
) -> tuple[dict[str, str], Any, dict[str, Any]]:
    """A login lacking scopes, and the shim's env with the stripping stand-in as the real
    claude; returns (env, marker file, the login as written)."""
    tokens = new_tokens()
    # Due too (8 minutes left, inside the 10-minute refresh window), so that the pre-flight
    # refreshes it (with a token good beyond it, it would repair it locally, issue 28); the
    # stand-in strips the new login after the pre-flight.
    written = home.write_credentials(tokens, scopes=None, oauth_extra=OAUTH_EXTRA,
                                     expires_at=int(time.time() * 1000) + 8 * 60_000)
    stand_in, marker = strip_scopes_once(home.root / "standin", claude.path)
    env = shim.env(home, token_server.url, CLAUDE_WRAP_REAL_CLAUDE=str(stand_in))
    return env, marker, written


# json is left out to keep the suite short: it is retried like text (tests/e2e/test_watch_real.py
# covers all three formats of the retry).
@pytest.mark.parametrize("output", ["text", "stream-json"])
def test_scopes_lost_after_the_preflight_are_repaired_and_the_run_retried(
    claude: ClaudeBinary,
    shim: Shim,
    claude_home: ClaudeHome,
    fake_api: FakeAnthropicAPI,
    token_server: TokenServer,
    output: str,
) -> None:
    fake_api.answer = f"one clean answer ({output})"
    env, marker, written = stripped_setup(claude, claude_home, token_server, shim)
    args, check = FORMATS[output]
    started = int(time.time() * 1000)
    run = shim.run(claude_home, "--print", *args, input=b"hello\n", env=env)
    assert marker.exists()  # the scopes were taken away after the pre-flight
    assert (run.returncode, run.err) == (0, ""), run.out
    check(run, fake_api.answer)  # one answer: nothing of the failed first run is shown
    if output == "stream-json":
        lines = [json.loads(line) for line in run.out.splitlines()]
        assert [line["type"] for line in lines].count("system") == 1
        assert [line["type"] for line in lines].count("result") == 1
    # One refresh, the pre-flight's; the repair after claude said `Not logged in` put the
    # scopes back locally (issue 14): the access token it had just got was good.
    (first,) = token_server.issued
    assert token_server.refresh_tokens_seen == [written["claudeAiOauth"]["refreshToken"]]
    # The failed run never called the API (logged out); the retry did, with that token.
    assert fake_api.tokens_used() == [first["access_token"]]
    assert_repaired(claude_home, written, first, started)


def test_the_tui_started_logged_out_is_repaired_once_in_place(
    claude: ClaudeBinary,
    shim: Shim,
    claude_home: ClaudeHome,
    fake_api: FakeAnthropicAPI,
    token_server: TokenServer,
) -> None:
    fake_api.answer = "pong"
    env, marker, written = stripped_setup(claude, claude_home, token_server, shim)
    # The failure-driven repair: without the guard, which would otherwise often repair the file
    # before the slow-starting binary reads it (test below).
    env["CLAUDE_WRAP_GUARD_PERIOD"] = "0"
    # The shim on an outer terminal of its own, so it runs the TUI under a pty it watches.
    term = shim.spawn(claude_home, env=env)
    started = time.monotonic()
    try:
        term.expect(TUI_LOGGED_OUT, timeout=60)  # the real binary started logged out
        assert marker.exists()
        # The repair, in the background, while the TUI keeps running: local (issue 14), the
        # pre-flight's fresh token kept.
        repaired = token_server.issued[0]["access_token"]
        wait_for(
            lambda: "scopes" in claude_home.read_credentials()["claudeAiOauth"],
            "the repaired login on disk",
        )
        assert claude_home.read_credentials()["claudeAiOauth"]["accessToken"] == repaired
        claude.note_time("(shim, TUI until the repair is on disk)", time.monotonic() - started)
        for prompt in ("hello", "again"):
            term.send(prompt)
            term.expect(prompt, timeout=30)
            term.send("\r")
            term.expect("pong", timeout=60)
        # The status line keeps its stale `Not logged in` (docs/protocol.md section 6): that is not
        # a new failure, so no second repair, and each prompt went out with the repaired token.
        assert len(token_server.requests) == 1
        # (2.1.87 makes more than one Messages call per prompt; all with the repaired token.)
        used = [c.token for c in fake_api.messages_calls()]
        assert len(used) >= 2 and set(used) == {repaired}
        quit_tui(term)
    finally:
        term.close(force=True)
    assert term.exitstatus == 0
    assert token_server.refresh_tokens_seen == [written["claudeAiOauth"]["refreshToken"]]
    stored = claude_home.read_credentials()["claudeAiOauth"]
    assert "user:inference" in stored["scopes"]
    assert {k: stored[k] for k in OAUTH_EXTRA} == OAUTH_EXTRA
    assert all(c.token == repaired for c in fake_api.messages_calls())


def test_scopes_dropped_during_a_tui_session_are_restored_before_the_next_prompt(
    claude: ClaudeBinary,
    shim: Shim,
    claude_home: ClaudeHome,
    fake_api: FakeAnthropicAPI,
    token_server: TokenServer,
) -> None:
    # The guard (soak, issue 9): an old tool rewrites the file without scopes while the TUI
    # runs; the shim repairs it before the user's next prompt, which the real binary then sends
    # instead of showing `Please run /login`. The token is good: a local repair, nothing spent
    # (issue 14). The strip is the hostile way: truncate, then write in place.
    fake_api.answer = "pong"
    tokens = new_tokens()
    written = claude_home.write_credentials(tokens, oauth_extra=OAUTH_EXTRA)
    env = shim.env(claude_home, token_server.url)
    term = shim.spawn(claude_home, env=env)
    try:
        term.expect(TUI_READY, timeout=90)
        stripped = json.loads(json.dumps(written))
        del stripped["claudeAiOauth"]["scopes"]
        path = claude_home.credentials_path
        began = time.monotonic()
        with path.open("r+b") as f:
            f.truncate(0)
            f.write(json.dumps(stripped).encode())
        wait_for(lambda: "scopes" in _oauth_or_empty(claude_home),
                 "the guard's repair, no prompt sent")
        claude.note_time("(shim, TUI guard: strip -> whole)", time.monotonic() - began)
        term.send("hello")
        term.expect("hello", timeout=30)
        term.send("\r")
        term.expect("pong", timeout=60)
        assert set(fake_api.tokens_used()) == {written["claudeAiOauth"]["accessToken"]}
        assert token_server.requests == []
        quit_tui(term)
    finally:
        term.close(force=True)
    stored = claude_home.read_credentials()["claudeAiOauth"]
    assert {k: stored[k] for k in OAUTH_EXTRA} == OAUTH_EXTRA


def _oauth_or_empty(home: ClaudeHome) -> dict[str, Any]:
    """The stored login, {} while a writer is half-way through the file."""
    try:
        return dict(home.read_credentials()["claudeAiOauth"])
    except (ValueError, KeyError):
        return {}
