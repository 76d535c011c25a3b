"""The watcher with the Keychain backend (issue 16): the relay's retry, the forced refresh after
a 401 and the TUI's guard, as tests/process/test_watch_relay.py and test_watch_interactive.py run
them against the file, here against a Keychain login read through the fake `security`. The fake
claude reads the same item (FAKE_CLAUDE_KEYCHAIN), as Claude Code does on macOS.

Before the storage layer gave every caller the login's identity, the watcher knew only the
file's: with the Keychain it never knew which login claude started with, so a 401 never forced
a refresh, a retry compared None with None, and the guard never fired.
"""

from __future__ import annotations

import re
import threading
import time
from typing import Any

import pytest

from claude_wrap_testing.tokenserver import TokenServer
from tests.conftest import ACCESS, SCOPES, Sandbox, login_doc
from tests.process.test_keychain import SERVICE, Keychain
from tests.process.test_watch_interactive import Term, finish, wait_for
from tests.process.test_watch_relay import E401, NLI, start


@pytest.fixture
def keychain(sandbox: Sandbox) -> Keychain:
    kc = Keychain(sandbox)
    kc.put(login_doc())
    sandbox.env["FAKE_CLAUDE_KEYCHAIN"] = SERVICE
    return kc


def test_a_401_with_a_keychain_login_forces_exactly_one_refresh(
    sandbox: Sandbox, keychain: Keychain, token_server: TokenServer
) -> None:
    env = sandbox.shim_env(FAKE_CLAUDE_FAIL_FIRST="1", FAKE_CLAUDE_FAIL_MESSAGE=E401)
    result = sandbox.claude("-p", "hi", env=env)
    assert result.returncode == 0, result.stderr
    # The item is the one claude started with: the server refused its token, so only a new
    # one helps (the login looked fine, so nothing but the force could have refreshed it).
    assert len(token_server.requests) == 1
    issued = token_server.issued[0]["access_token"]
    assert keychain.get()["claudeAiOauth"]["accessToken"] == issued
    runs = sandbox.runs()
    assert len(runs) == 2
    assert runs[1]["access_token"] == issued  # the retry read the repaired item
    assert not sandbox.creds.exists()  # nothing written to a file on the side


def strip_item_during_runs(sandbox: Sandbox, kc: Keychain, runs: int) -> threading.Thread:
    """A third-party tool that rewrites the item without scopes while each of the first `runs`
    runs of claude is under way (after it started, before it reads the login)."""

    def strip() -> None:
        for n in range(1, runs + 1):
            wait_for(lambda n=n: len(sandbox.runs()) >= n, f"run {n}", limit=60)
            doc = kc.get()
            del doc["claudeAiOauth"]["scopes"]
            kc.put(doc)

    thread = threading.Thread(target=strip, daemon=True)
    thread.start()
    return thread


def test_an_item_broken_again_during_the_retry_is_repaired_and_retried_again(
    sandbox: Sandbox, keychain: Keychain, token_server: TokenServer
) -> None:
    # The retry compares the item's identity after our repair with the one the retry met: a
    # change in between is a new case, repaired and retried (with the file's identity only,
    # both were None, and the second failure was taken for the same one).
    stripper = strip_item_during_runs(sandbox, keychain, 2)
    proc = start(sandbox, "-p", "hi", env=sandbox.shim_env(FAKE_CLAUDE_SLEEP="1"))
    out, err = proc.communicate(timeout=90)
    stripper.join(5)
    assert proc.returncode == 0, err
    assert out.startswith(b"fake answer") and NLI.encode() not in out
    assert err == b""
    assert len(sandbox.runs()) == 3
    assert token_server.requests == []  # one local repair per rewrite: the token was good
    assert keychain.get()["claudeAiOauth"]["scopes"] == SCOPES


def test_the_same_refusal_after_a_repair_of_the_item_is_not_retried_again(
    sandbox: Sandbox, keychain: Keychain, token_server: TokenServer
) -> None:
    # The other side of the identity: the item our repair left, refused again, is shown as it
    # is, with one line, and no second token is spent on it.
    env = sandbox.shim_env(FAKE_CLAUDE_FAIL_FIRST="5", FAKE_CLAUDE_FAIL_MESSAGE=E401)
    result = sandbox.claude("-p", "hi", env=env)
    assert result.returncode == 1
    assert len(sandbox.runs()) == 2
    assert len(token_server.requests) == 1
    assert b"again after the login was repaired" in result.stderr


@pytest.mark.timeout(60)
def test_the_guard_repairs_a_stripped_keychain_login_before_a_prompt_meets_it(
    sandbox: Sandbox, keychain: Keychain, token_server: TokenServer
) -> None:
    env = sandbox.shim_env(FAKE_CLAUDE_TUI="1", CLAUDE_WRAP_GUARD_PERIOD="0.2")
    term = Term(
        "bash",
        ["--norc", "-c", "stty -g; echo; claude; echo STATUS=$?; stty -g"],
        env=env,
        cwd=str(sandbox.root),
        dimensions=(30, 100),
        timeout=20,
    )
    try:
        term.expect(rb"([^\r\n]+)\r\n")
        assert isinstance(term.match, re.Match)  # a regex matched
        term.settings_before = term.match.group(1)
        term.expect("status: ready")
        stripped = time.monotonic()
        doc = keychain.get()
        del doc["claudeAiOauth"]["scopes"]
        keychain.put(doc)  # a third-party tool rewrote the item without scopes

        def repaired() -> Any:
            return "scopes" in keychain.get()["claudeAiOauth"]

        wait_for(repaired, "the guard's repair, with no prompt sent")
        print(f"strip -> repair: {(time.monotonic() - stripped) * 1000:.1f} ms (Keychain)")
        # The access token was still good: repaired locally, the tokens as they were.
        oauth = keychain.get()["claudeAiOauth"]
        assert (oauth["accessToken"], oauth["scopes"]) == (ACCESS, SCOPES)
        assert token_server.requests == []
        term.sendline("first")
        term.expect(f"answer: first with {ACCESS[-9:]}")
        term.sendline("quit")
        assert finish(term) == 0
    finally:
        term.close(force=True)
    assert token_server.requests == []
    assert not sandbox.creds.exists()
