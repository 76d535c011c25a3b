"""The real `claude`, run directly: the failures docs/protocol.md section 10 names, as each
release of the matrix prints them in each headless output format, recorded in
samples/<version>/ for the output watcher's tests (tests/pure/test_watch_detect.py).

- Busy lock: the refresh locks held by a holder that exited mid-refresh (fresh folders that
  nobody touches, no owner record) and a token past its expiry. 2.1.332 and later wait for the
  lock, see it unchanged, find no record to prove the holder gone, and refuse the run (a
  `server_error`); older releases give up on the lock and send the stored token.
- Revoked: the API refuses the token as revoked (a 401 naming the access token). 2.1.332 and
  later print their own revoked form; older ones the API's 401.
- Time limit: the token endpoint answers invalid_grant `Refresh token expired` (the login's time
  limit). 2.1.332 and later mark the login ended (`loginEnded: "time_limit"`) and print the
  time-limit form; older ones their invalid_grant form. The TUI, started on a login so marked,
  draws `Not logged in · run /login`, and `Login reached its time limit` once a prompt is sent.
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

import pytest

from claude_wrap.config import versions
from claude_wrap_testing.fakeapi import FakeAnthropicAPI
from claude_wrap_testing.isolation import ClaudeBinary, ClaudeHome, new_tokens, now_ms, quit_tui
from claude_wrap_testing.tlsproxy import OAuthProxy
from claude_wrap_testing.tokenserver import Reply, TokenServer

from .samples import check_sample, json_lines_shape, recording, sample_path

# The first release of the matrix that prints the forms of section 10 (read in both bundles: none
# of them is in 2.1.197's or 2.1.87's).
FIRST_WITH_FORMS = (2, 1, 332)
BUSY_PRINT = (
    "Failed to refresh OAuth token: another Claude Code process is refreshing it or exited "
    "mid-refresh. This is usually transient; retry in a minute"
)
REVOKED_PRINT = (
    "Failed to authenticate: OAuth token revoked. Please log in again or contact your "
    "administrator."
)
TIME_LIMIT_PRINT = "Failed to authenticate: this login reached its time limit"

FORMATS = {
    "text": (("--print",), "txt"),
    "json": (("--print", "--output-format", "json"), "json"),
    "stream-json": (("--print", "--output-format", "stream-json", "--verbose"), "stream.jsonl"),
}


def has_forms(claude: ClaudeBinary) -> bool:
    parsed = versions.parse(claude.version)
    assert parsed is not None
    return parsed >= FIRST_WITH_FORMS


def _shape(fmt: str):  # type: ignore[no-untyped-def]
    return (lambda data: data) if fmt == "text" else json_lines_shape


def _texts(fmt: str, stdout: bytes) -> list[str]:
    """What the run said: the line (text), or the result and the synthetic message's text."""
    if fmt == "text":
        return [stdout.decode().rstrip("\n")]
    out = []
    for line in stdout.decode().splitlines():
        obj = json.loads(line)
        if obj.get("type") == "result" and isinstance(obj.get("result"), str):
            out.append(obj["result"])
        if obj.get("type") == "assistant":
            out += [c.get("text", "") for c in obj["message"]["content"]]
    return out


def _synthetic_errors(fmt: str, stdout: bytes) -> list[object]:
    if fmt != "stream-json":
        return []
    lines = [json.loads(line) for line in stdout.decode().splitlines()]
    return [o.get("error") for o in lines if o.get("type") == "assistant"]


@pytest.mark.parametrize("fmt", FORMATS)
def test_busy_lock(
    claude: ClaudeBinary, claude_home: ClaudeHome, fake_api: FakeAnthropicAPI, fmt: str
) -> None:
    tokens = new_tokens()
    written = claude_home.write_credentials(tokens, expires_at=now_ms() - 60_000)
    cfg = claude_home.config_dir
    for lock in (cfg / ".oauth_refresh.lock", Path(os.path.realpath(cfg) + ".lock")):
        lock.mkdir()  # left by a holder that exited mid-refresh: fresh, untouched, no record
    args, ext = FORMATS[fmt]
    run = claude.run(claude_home, *args, input=b"hello\n")
    assert run.err == ""
    if has_forms(claude):
        assert run.returncode == 1, run.out
        texts = _texts(fmt, run.stdout)
        assert texts and all(t.startswith(BUSY_PRINT) for t in texts), run.out
        assert _synthetic_errors(fmt, run.stdout) in ([], ["server_error"])
        assert fake_api.messages_calls() == []
    else:
        # They give up on the lock after their tries and send the stored token, which works.
        assert run.returncode == 0, run.out
        assert fake_api.tokens_used() == [tokens.access]
    assert claude_home.read_credentials() == written  # nobody refreshed over the lock
    check_sample(claude.version, f"print_busy_lock.{ext}", run.stdout, _shape(fmt))


@pytest.mark.parametrize("fmt", FORMATS)
def test_revoked_token(
    claude: ClaudeBinary, claude_home: ClaudeHome, fake_api: FakeAnthropicAPI, fmt: str
) -> None:
    claude_home.write_credentials(new_tokens())
    fake_api.check_token = lambda token: "access_revoked"
    args, ext = FORMATS[fmt]
    run = claude.run(claude_home, *args, input=b"hello\n")
    assert (run.returncode, run.err) == (1, "")
    texts = _texts(fmt, run.stdout)
    if has_forms(claude):
        assert texts and set(texts) == {REVOKED_PRINT}, run.out
    else:
        assert texts and all(
            t.startswith("Failed to authenticate. API Error: 401") for t in texts
        ), run.out
    check_sample(claude.version, f"print_revoked.{ext}", run.stdout, _shape(fmt))


@pytest.mark.parametrize("fmt", FORMATS)
def test_time_limit(
    claude: ClaudeBinary,
    claude_home: ClaudeHome,
    fake_api: FakeAnthropicAPI,
    token_server: TokenServer,
    oauth_proxy: OAuthProxy,
    fmt: str,
) -> None:
    # The refresh token outlived the login's time limit: the endpoint says so in invalid_grant.
    token_server.default = lambda server, request: Reply(
        400, {"error": "invalid_grant", "error_description": "Refresh token expired"}
    )
    tokens = new_tokens()
    claude_home.write_credentials(
        tokens, expires_at=now_ms() - 60_000,
        oauth_extra={"refreshTokenExpiresAt": now_ms() - 3_600_000},
    )
    fake_api.expire(tokens.access)
    args, ext = FORMATS[fmt]
    run = claude.run(claude_home, *args, input=b"hello\n",
                     env=claude_home.env(**oauth_proxy.env()))
    assert run.returncode == 1, run.out + run.err
    texts = _texts(fmt, run.stdout)
    oauth = claude_home.read_credentials()["claudeAiOauth"]
    if has_forms(claude):
        assert texts and all(t.startswith(TIME_LIMIT_PRINT) for t in texts), run.out
        assert oauth["loginEnded"] == "time_limit"
    else:
        assert texts and not any("time limit" in t for t in texts), run.out
        assert "loginEnded" not in oauth
    check_sample(claude.version, f"print_time_limit.{ext}", run.stdout, _shape(fmt))


TUI_TIME_LIMIT = re.compile(rb"Login(?:\x1b\[[\d;]*[Gm]| )+reached(?:\x1b\[[\d;]*[Gm]| )+its")


def test_tui_time_limit(
    claude: ClaudeBinary, claude_home: ClaudeHome, fake_api: FakeAnthropicAPI
) -> None:
    if not has_forms(claude):
        pytest.skip(f"{claude.version} has no time-limit form (none in its code): only 2.1.332+")
    # The login as 2.1.332+ leaves it after the endpoint said its time limit was reached.
    claude_home.write_credentials(
        new_tokens(), expires_at=0,
        oauth_extra={"accessToken": "", "refreshToken": "", "loginEnded": "time_limit"},
    )
    child = claude.spawn(claude_home)
    try:
        child.expect(re.compile(rb"logged(?:\x1b\[[\d;]*[Gm]| )+in"), timeout=60)
        assert isinstance(child.before, bytes) and isinstance(child.after, bytes)
        drawn = child.before + child.after
        time.sleep(1)  # the prompt box takes keys once drawn (not a timed assertion)
        child.send("hello")
        time.sleep(0.5)
        child.send("\r")
        child.expect(TUI_TIME_LIMIT, timeout=60)
        assert isinstance(child.before, bytes) and isinstance(child.after, bytes)
        drawn += child.before + child.after
        child.expect(re.compile(rb"/login"), timeout=60)  # the rest of that line
        assert isinstance(child.before, bytes) and isinstance(child.after, bytes)
        drawn += child.before + child.after
        quit_tui(child)
    finally:
        child.close(force=True)
    assert fake_api.messages_calls() == []
    sample = sample_path(claude.version, "tui_time_limit.bin")
    if recording():
        sample.parent.mkdir(parents=True, exist_ok=True)
        sample.write_bytes(drawn)
    else:
        assert TUI_TIME_LIMIT.search(sample.read_bytes())
