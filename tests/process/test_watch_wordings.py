"""Headless runs through the shim that fail once with a wording of the newest Claude Code.

claude_wrap_testing/fakeclaude.py prints the wording 2.1.332 prints (docs/protocol.md section 9; the
invalid_grant form recorded in tests/e2e/samples/2.1.332/print_invalid_grant.txt) in each output
format, with exit 1, on its first run only: the shim must repair and retry, and the user sees
one clean answer. The busy-lock message (section 10, as printed) is no login failure: the shim
waits for the lock, never refreshes over it, and runs claude again once it is free; the
time-limit and organization forms go through as they are, with no token request.
"""

from __future__ import annotations

import json
import os
import threading

import pytest

from claude_wrap_testing.tokenserver import TokenServer
from tests.conftest import Sandbox, login_doc

WORDINGS = (
    "Failed to authenticate: OAuth session expired and could not be refreshed",
    "OAuth refresh token is no longer valid; run /login to re-authenticate",
    "Your session has expired. Please run /login to sign in again.",
    "Session expired. Please run /login to sign in again.",
    "Login expired · Please run /login",
)
BUSY = (
    "Failed to refresh OAuth token: another Claude Code process is refreshing it or exited "
    "mid-refresh. This is usually transient; retry in a minute, and if it persists close other "
    "Claude Code processes or sign in again"
)
BEYOND_REFRESH = (
    "Failed to authenticate: this login reached its time limit and cannot be renewed. Run "
    "`claude auth login` to sign in again, or use `claude setup-token` and set "
    "CLAUDE_CODE_OAUTH_TOKEN for unattended jobs",
    "Login reached its time limit · Please run /login",
    "Not logged in · Run /status for details",
    "Not signed in to gateway · /login",
    "Run /status for details · API Error: 401 OAuth token has expired.",
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
def test_a_busy_lock_with_no_lock_left_is_run_again_and_spends_no_token(
    logged_in: Sandbox, token_server: TokenServer, fmt: str
) -> None:
    env = logged_in.shim_env(FAKE_CLAUDE_FAIL_FIRST="1", FAKE_CLAUDE_FAIL_MESSAGE=BUSY)
    watched = logged_in.claude(*_args(fmt), env=env)
    assert watched.returncode == 0, watched.stderr
    assert len(logged_in.runs()) == 2  # the lock was free by the time we looked: run again
    assert token_server.requests == []  # never a refresh of ours
    assert BUSY.encode() not in watched.stdout
    assert watched.stderr == b""


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_busy_lock_is_waited_for_and_the_run_retried_once_it_is_released(
    logged_in: Sandbox, token_server: TokenServer, fmt: str
) -> None:
    held = logged_in.cfg / ".oauth_refresh.lock"
    held.mkdir()  # another Claude Code process refreshing; it lets go a moment later
    env = logged_in.shim_env(
        FAKE_CLAUDE_FAIL_FIRST="1", FAKE_CLAUDE_FAIL_MESSAGE=BUSY, CLAUDE_WRAP_LOCK_TIMEOUT="60"
    )

    def release_once_claude_ran() -> None:
        while not logged_in.runs():
            threading.Event().wait(0.05)
        threading.Event().wait(0.5)
        os.rmdir(held)

    releaser = threading.Thread(target=release_once_claude_ran)
    releaser.start()
    try:
        watched = logged_in.claude(*_args(fmt), env=env)
    finally:
        releaser.join()
    assert watched.returncode == 0, watched.stderr
    assert len(logged_in.runs()) == 2
    assert token_server.requests == []
    assert BUSY.encode() not in watched.stdout


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_busy_lock_still_held_is_shown_as_it_is_and_spends_no_token(
    logged_in: Sandbox, token_server: TokenServer, fmt: str
) -> None:
    held = logged_in.cfg / ".oauth_refresh.lock"
    held.mkdir()
    stop = threading.Event()

    def keep_touching() -> None:  # a live holder: its heartbeat keeps the lock fresh
        while not stop.wait(0.2):
            os.utime(held)

    toucher = threading.Thread(target=keep_touching)
    toucher.start()
    env = logged_in.shim_env(
        FAKE_CLAUDE_FAIL_FIRST="1", FAKE_CLAUDE_FAIL_MESSAGE=BUSY, CLAUDE_WRAP_LOCK_TIMEOUT="1"
    )
    try:
        watched = logged_in.claude(*_args(fmt), env=env)
    finally:
        stop.set()
        toucher.join()
    assert watched.returncode == 1
    assert len(logged_in.runs()) == 1  # no retry while the lock is held
    assert token_server.requests == []  # never a refresh over another process's lock
    assert BUSY.encode() in watched.stdout
    [line] = watched.stderr.decode().splitlines()
    assert "still held" in line and "no token was requested" in line, line
    assert held.is_dir()  # left to its holder


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("wording", BEYOND_REFRESH, ids=lambda w: w.split()[0] + str(len(w)))
def test_the_time_limit_and_organization_forms_go_through_with_no_token_request(
    logged_in: Sandbox, token_server: TokenServer, wording: str, fmt: str
) -> None:
    env = logged_in.shim_env(FAKE_CLAUDE_FAIL_FIRST="1", FAKE_CLAUDE_FAIL_MESSAGE=wording)
    watched = logged_in.claude(*_args(fmt), env=env)
    assert watched.returncode == 1
    assert len(logged_in.runs()) == 1
    assert token_server.requests == []
    shown = watched.stdout.decode()
    if fmt != "text":  # the fake writes JSON with ASCII escapes
        shown = json.loads(shown.splitlines()[-1])["result"]
    assert wording in shown
    assert watched.stderr == b""


def test_a_login_failure_after_a_wait_for_the_lock_is_still_repaired(
    logged_in: Sandbox, token_server: TokenServer
) -> None:
    # Run 1: busy (no lock left: run again at once, nothing repaired); run 2: the scopes are
    # gone, say; on the same file, this is the first failure a repair can fix: repair, run 3.
    env = logged_in.shim_env(
        FAKE_CLAUDE_FAIL_FIRST="2", FAKE_CLAUDE_FAIL_MESSAGE=BUSY + "\n" + WORDINGS[0]
    )
    result = logged_in.claude(*_args("text"), env=env)
    assert result.returncode == 0, result.stderr
    assert len(logged_in.runs()) == 3
    assert result.stderr == b""
