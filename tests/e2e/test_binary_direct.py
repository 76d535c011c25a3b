"""The real `claude`, run directly (no claude-wrap): what the shim has to repair.

These pin down docs/protocol.md sections 2 and 6 against the pinned binary: a login without
`scopes` counts as logged out whatever its expiry, and how each output format shows that. The
outputs are kept in samples/ for the output-watching code's tests.
"""

from __future__ import annotations

import json
import re
import time

import pytest

from claude_wrap_testing.fakeapi import EXPIRED_MESSAGE, MODEL, FakeAnthropicAPI
from claude_wrap_testing.isolation import ClaudeBinary, ClaudeHome, new_tokens, quit_tui

from .samples import check_sample, json_lines_shape, recording, sample_path

LOGGED_OUT = "Not logged in · Please run /login"
# 2.1.197 draws each word at an absolute column (ESC[<n>G) instead of printing spaces; 2.1.332
# draws real spaces inside colour escapes, and writes "run" where 2.1.197 wrote "Run".
_GAP = rb"(?:\x1b\[[\d;]*[Gm]| )+"
TUI_LOGGED_OUT = re.compile(
    rb"Not" + _GAP + rb"logged" + _GAP + rb"in" + _GAP + "·".encode() + _GAP
    + rb"(?:Please" + _GAP + rb")?[Rr]un" + _GAP + rb"/login"
)


def _exact(data: bytes) -> bytes:
    return data


# --- claude auth status ---------------------------------------------------------------------


def test_auth_status_without_scopes_is_logged_out(
    claude: ClaudeBinary, claude_home: ClaudeHome
) -> None:
    claude_home.write_credentials(new_tokens(), scopes=None)
    run = claude.run(claude_home, "auth", "status")
    assert run.returncode == 1
    status = json.loads(run.stdout)
    # Versions add fields (2.1.332: loginExpiresAt, configDirectory, ...): judge what matters.
    assert (status["loggedIn"], status["authMethod"]) == (False, "none")
    assert run.stderr == b""


def test_auth_status_with_scopes_is_logged_in(
    claude: ClaudeBinary, claude_home: ClaudeHome
) -> None:
    claude_home.write_credentials(new_tokens())
    run = claude.run(claude_home, "auth", "status")
    assert run.returncode == 0
    status = json.loads(run.stdout)
    assert status["loggedIn"] is True
    assert status["authMethod"] == "claude.ai"
    assert status["subscriptionType"] == "max"
    assert run.stderr == b""


# --- claude --print ---------------------------------------------------------------------------


def test_print_with_scopes_answers_with_the_stored_token(
    claude: ClaudeBinary, claude_home: ClaudeHome, fake_api: FakeAnthropicAPI
) -> None:
    fake_api.answer = "pong from the fake API"
    tokens = new_tokens()
    written = claude_home.write_credentials(tokens)
    run = claude.run(claude_home, "--print", input=b"hello\n")
    assert (run.returncode, run.out, run.err) == (0, "pong from the fake API\n", "")
    assert fake_api.tokens_used() == [tokens.access]
    assert claude_home.read_credentials() == written  # a valid login is left as it was
    # For the record: besides the Messages call it only preconnects with `HEAD /`.
    print("endpoints called:", sorted(set(fake_api.paths())))


def test_print_without_scopes_says_not_logged_in(
    claude: ClaudeBinary, claude_home: ClaudeHome, fake_api: FakeAnthropicAPI
) -> None:
    written = claude_home.write_credentials(new_tokens(), scopes=None)
    run = claude.run(claude_home, "--print", input=b"hello\n")
    assert (run.returncode, run.out, run.err) == (1, LOGGED_OUT + "\n", "")
    assert fake_api.messages_calls() == []  # it never tries the network
    assert claude_home.read_credentials() == written
    check_sample(claude.version, "print_logged_out.txt", run.stdout, _exact)


def test_print_json_without_scopes(
    claude: ClaudeBinary, claude_home: ClaudeHome, fake_api: FakeAnthropicAPI
) -> None:
    claude_home.write_credentials(new_tokens(), scopes=None)
    run = claude.run(claude_home, "--print", "--output-format", "json", input=b"hello\n")
    assert (run.returncode, run.err) == (1, "")
    [line] = run.out.splitlines()
    result = json.loads(line)
    assert (result["type"], result["is_error"], result["result"]) == ("result", True, LOGGED_OUT)
    assert fake_api.messages_calls() == []
    check_sample(claude.version, "print_logged_out.json", run.stdout, json_lines_shape)


STREAM_JSON = ("--print", "--output-format", "stream-json", "--verbose")
USER_LINE = b'{"type":"user","message":{"role":"user","content":"hello"}}\n'


@pytest.mark.parametrize(
    ("args", "stdin", "sample"),
    [
        (STREAM_JSON, b"hello\n", "print_logged_out.stream.jsonl"),
        # How editors and the Agent SDK run it (docs/protocol.md section 8).
        ((*STREAM_JSON, "--input-format", "stream-json"), USER_LINE,
         "print_logged_out.stream-in.jsonl"),
    ],
    ids=["text-in", "stream-json-in"],
)
def test_stream_json_without_scopes_is_three_lines(
    claude: ClaudeBinary,
    claude_home: ClaudeHome,
    fake_api: FakeAnthropicAPI,
    args: tuple[str, ...],
    stdin: bytes,
    sample: str,
) -> None:
    claude_home.write_credentials(new_tokens(), scopes=None)
    run = claude.run(claude_home, *args, input=stdin)
    assert (run.returncode, run.err) == (1, "")
    init, assistant, result = (json.loads(line) for line in run.out.splitlines())
    assert (init["type"], init["subtype"]) == ("system", "init")
    assert assistant["type"] == "assistant"
    assert assistant["error"] == "authentication_failed"
    assert assistant["message"]["model"] == "<synthetic>"
    assert assistant["message"]["content"] == [{"type": "text", "text": LOGGED_OUT}]
    assert (result["type"], result["is_error"], result["result"]) == ("result", True, LOGGED_OUT)
    assert fake_api.messages_calls() == []
    check_sample(claude.version, sample, run.stdout, json_lines_shape)


def test_stream_json_with_scopes_is_a_healthy_run(
    claude: ClaudeBinary, claude_home: ClaudeHome, fake_api: FakeAnthropicAPI
) -> None:
    # The counterpart the output watcher must not mistake for a login failure.
    fake_api.answer = "pong"
    claude_home.write_credentials(new_tokens())
    run = claude.run(claude_home, *STREAM_JSON, input=b"hello\n")
    assert (run.returncode, run.err) == (0, "")
    lines = [json.loads(line) for line in run.out.splitlines()]
    assert (lines[0]["type"], lines[0]["subtype"]) == ("system", "init")
    assistants = [line for line in lines if line["type"] == "assistant"]
    assert [a["message"]["model"] for a in assistants] == [MODEL]
    assert all("error" not in a for a in assistants)
    assert (lines[-1]["type"], lines[-1]["is_error"], lines[-1]["result"]) == (
        "result", False, "pong"
    )
    check_sample(claude.version, "print_ok.stream.jsonl", run.stdout, json_lines_shape)


def test_print_with_a_token_the_api_calls_expired(
    claude: ClaudeBinary, claude_home: ClaudeHome, fake_api: FakeAnthropicAPI
) -> None:
    # The stored expiry says valid, the server says expired: it tries to refresh (which cannot
    # reach platform.claude.com in the namespace), retries once, then gives up.
    tokens = new_tokens()
    written = claude_home.write_credentials(tokens)
    fake_api.expire(tokens.access)
    run = claude.run(claude_home, "--print", input=b"hello\n")
    assert (run.returncode, run.err) == (1, "")
    # 2.1.197 and 2.1.332 add the API's message, 2.1.87 its whole JSON body.
    assert run.out.startswith("Failed to authenticate. API Error: 401 "), run.out
    assert EXPIRED_MESSAGE in run.out
    calls = [c.token for c in fake_api.messages_calls()]
    assert len(calls) >= 2 and set(calls) == {tokens.access}
    assert claude_home.read_credentials() == written  # a failed network refresh keeps the file
    check_sample(claude.version, "print_expired_401.txt", run.stdout, _exact)


# --- the interactive TUI ----------------------------------------------------------------------


def test_tui_without_scopes_shows_not_logged_in(
    claude: ClaudeBinary, claude_home: ClaudeHome, fake_api: FakeAnthropicAPI
) -> None:
    claude_home.write_credentials(new_tokens(), scopes=None)
    started = time.monotonic()
    child = claude.spawn(claude_home)
    try:
        child.expect(TUI_LOGGED_OUT, timeout=60)
        claude.note_time("(TUI, until `Not logged in` is drawn)", time.monotonic() - started)
        assert isinstance(child.before, bytes)
        assert isinstance(child.after, bytes)
        drawn = child.before + child.after
        sample = sample_path(claude.version, "tui_logged_out.bin")
        if recording():
            sample.parent.mkdir(parents=True, exist_ok=True)
            sample.write_bytes(drawn)
        # The REPL stays open when logged out; two Ctrl-C quit it.
        quit_tui(child)
    finally:
        child.close(force=True)
    assert child.exitstatus == 0
    assert fake_api.messages_calls() == []
    if not recording():
        assert TUI_LOGGED_OUT.search(sample.read_bytes())
