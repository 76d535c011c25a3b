"""Headless runs through the shim that fail once with a wording of the newest Claude Code.

tests/fakeclaude.py prints the wording 2.1.332 prints (protocol.md section 9; the invalid_grant
form recorded in tests/e2e/samples/2.1.332/print_invalid_grant.txt) in each output format, with
exit 1, on its first run only: the shim must repair and retry, and the user sees one clean answer.
The busy-lock message is no login failure: it goes through as it is, with no refresh.
"""

from __future__ import annotations

import json

import pytest

from tests.conftest import Sandbox, login_doc
from tests.tokenserver import TokenServer

WORDINGS = (
    "Failed to authenticate: OAuth session expired and could not be refreshed",
    "OAuth refresh token is no longer valid; run /login to re-authenticate",
    "Your session has expired. Please run /login to sign in again.",
    "Session expired. Please run /login to sign in again.",
    "Login expired · Please run /login",
)
BUSY = (
    "OAuth access token could not be refreshed: another Claude Code process is holding the "
    "refresh lock"
)
FORMATS = ("text", "json", "stream-json")


def _args(fmt: str) -> list[str]:
    return ["-p", "hi", "--output-format", fmt] + (["--verbose"] if fmt == "stream-json" else [])


@pytest.fixture
def logged_in(sandbox: Sandbox) -> Sandbox:
    sandbox.write(login_doc())
    return sandbox


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("wording", WORDINGS, ids=lambda w: w.split()[0] + str(len(w)))
def test_a_run_failing_once_with_a_newest_wording_is_repaired_and_retried(
    logged_in: Sandbox, token_server: TokenServer, wording: str, fmt: str
) -> None:
    env = logged_in.shim_env(FAKE_CLAUDE_FAIL_FIRST="1", FAKE_CLAUDE_FAIL_MESSAGE=wording)
    result = logged_in.claude(*_args(fmt), env=env)
    assert result.returncode == 0, result.stderr
    assert len(logged_in.runs()) == 2
    assert wording.encode() not in result.stdout
    assert result.stderr == b""
    if fmt != "text":
        assert json.loads(result.stdout.splitlines()[-1])["is_error"] is False


@pytest.mark.parametrize("fmt", FORMATS)
def test_the_busy_lock_message_is_shown_as_it_is_and_spends_no_token(
    logged_in: Sandbox, token_server: TokenServer, fmt: str
) -> None:
    env = logged_in.shim_env(FAKE_CLAUDE_FAIL_FIRST="1", FAKE_CLAUDE_FAIL_MESSAGE=BUSY)
    watched = logged_in.claude(*_args(fmt), env=env)
    assert watched.returncode == 1
    assert len(logged_in.runs()) == 1  # no retry
    assert token_server.requests == []  # never a refresh over another process's lock
    assert BUSY.encode() in watched.stdout
