"""Interactive runs: the shim inside an outer pexpect.spawn, so it gets a real terminal, in front
of the fake claude's TUI. We type keys, resize, press Ctrl-C, and look at the terminal after."""

from __future__ import annotations

import re
import signal
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pexpect
import pytest

from claude_wrap_testing.tokenserver import TokenServer, invalid_grant
from tests.conftest import ACCESS, SCOPES, Sandbox, login_doc

# Print the terminal's settings before and after claude, and claude's status, so a test can see
# that the wrapper left the terminal as it found it.
SCRIPT = "stty -g; echo; claude; echo STATUS=$?; stty -g"

pytestmark = pytest.mark.timeout(60)

if TYPE_CHECKING:
    _Spawn = pexpect.spawn[bytes]  # generic in its stubs only: not subscriptable at run time
else:
    _Spawn = pexpect.spawn


class Term(_Spawn):
    """The outer terminal running SCRIPT; keeps what `stty -g` printed before claude ran."""

    settings_before: bytes


def wait_for(predicate: Any, what: str, limit: float = 20) -> None:
    deadline = time.monotonic() + limit
    while not predicate():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.02)


@pytest.fixture
def tui(sandbox: Sandbox) -> Iterator[Any]:
    sandbox.write(login_doc())
    spawned: list[Term] = []

    def start(**extra: str) -> Term:
        env = sandbox.shim_env(FAKE_CLAUDE_TUI="1", **extra)
        term = Term(
            "bash",
            ["--norc", "-c", SCRIPT],
            env=env,
            cwd=str(sandbox.root),
            dimensions=(30, 100),
            timeout=20,
        )
        term.expect(rb"([^\r\n]+)\r\n")
        assert isinstance(term.match, re.Match)  # a regex matched
        term.settings_before = term.match.group(1)
        spawned.append(term)
        return term

    yield start
    for term in spawned:
        term.close(force=True)


def finish(term: Term) -> int:
    term.expect(rb"STATUS=(\d+)\r\n([^\r\n]+)\r\n")
    assert isinstance(term.match, re.Match)  # a regex matched
    status = int(term.match.group(1))
    # stty -g after claude: the terminal is exactly as it was before.
    assert term.match.group(2) == term.settings_before
    term.expect(pexpect.EOF)
    return status


def test_failure_in_the_tui_is_repaired_in_place_once_and_the_next_prompt_works(
    tui: Any, sandbox: Sandbox, token_server: TokenServer
) -> None:
    term = tui(FAKE_CLAUDE_FAIL_FIRST="1")
    term.expect("size: 30x100")
    term.expect("Not")  # the status line, drawn word by word
    wait_for(lambda: len(token_server.issued) == 1, "the repair")
    new = token_server.issued[0]["access_token"]
    wait_for(lambda: sandbox.oauth()["accessToken"] == new, "the file to be rewritten")
    for word in ("hello", "again", "more"):
        term.sendline(word)
        term.expect(f"answer: {word} with {new[-9:]}")
        term.expect("/login")  # the status line still says Not logged in, like the real one
    term.sendline("quit")
    assert finish(term) == 0
    assert len(token_server.requests) == 1  # once per failure: never a refresh loop


def test_a_rotation_during_a_session_costs_the_next_prompt_nothing(
    tui: Any, sandbox: Sandbox, token_server: TokenServer
) -> None:
    """On the faithful service (issue 26) a refresh revokes the token the session started with:
    the next prompt is answered with the new one, read from the file claude-wrap rewrote."""
    term = tui()
    term.expect("status: ready")
    term.sendline("before")
    term.expect(f"answer: before with {ACCESS[-9:]}")
    rotated = sandbox.wrap("refresh", "--force")
    assert rotated.returncode == 0, rotated.stderr
    new = token_server.issued[-1]["access_token"]
    assert sandbox.oauth()["accessToken"] == new
    if not token_server.lenient:
        assert token_server.check(ACCESS) is not None  # the old one is dead
    term.sendline("after")
    term.expect(f"answer: after with {new[-9:]}")
    term.sendline("quit")
    assert finish(term) == 0
    assert len(token_server.requests) == 1


def test_scopes_stripped_during_a_session_are_restored_before_any_prompt_meets_them(
    tui: Any, sandbox: Sandbox, token_server: TokenServer
) -> None:
    # The guard (issue 9: the soak's TUI prompts failed after each hostile rewrite until the
    # failure itself, or the next keeper run, brought the repair).
    term = tui()
    term.expect("status: ready")
    stripped = time.monotonic()
    sandbox.write(login_doc(scopes=None))  # truncate, then rewrite in place: no scopes
    wait_for(lambda: "scopes" in sandbox.oauth(), "the guard's repair, with no prompt sent")
    print(f"strip -> repair: {(time.monotonic() - stripped) * 1000:.1f} ms (TUI guard)")
    # The access token was still good: repaired locally, the tokens as they were (issue 14).
    assert sandbox.oauth()["accessToken"] == ACCESS
    assert sandbox.oauth()["scopes"] == SCOPES
    assert token_server.requests == []
    term.sendline("first")
    term.expect(f"answer: first with {ACCESS[-9:]}")
    # A change that leaves the login usable (Claude Code's own refresh) is left alone.
    own = "sk-ant-oat01-claude-code-own-refresh"
    sandbox.write(login_doc(access=own))
    term.sendline("second")
    term.expect(f"answer: second with {own[-9:]}")
    term.sendline("quit")
    assert finish(term) == 0
    assert token_server.requests == []


def test_scopes_stripped_during_a_session_are_restored_for_the_next_prompt(
    tui: Any, sandbox: Sandbox, token_server: TokenServer
) -> None:
    # Without the guard (or before it looked), the failure claude shows brings the repair.
    term = tui(CLAUDE_WRAP_GUARD_PERIOD="0")
    term.expect("status: ready")
    sandbox.write(login_doc(scopes=None))  # another program rewrote the file without scopes
    term.sendline("first")
    term.expect("API Error: 401")
    wait_for(lambda: "scopes" in sandbox.oauth(), "the repair")
    term.sendline("second")
    term.expect(f"answer: second with {ACCESS[-9:]}")
    term.sendline("quit")
    assert finish(term) == 0
    assert token_server.requests == []  # the token was good: a local repair, no refresh


def test_window_size_changes_reach_the_child(tui: Any) -> None:
    term = tui()
    term.expect("status: ready")
    term.setwinsize(40, 120)
    term.expect("size: 40x120")
    term.sendline("quit")
    assert finish(term) == 0


def test_ctrl_c_goes_to_the_child_and_the_exit_status_comes_back(tui: Any) -> None:
    term = tui(FAKE_CLAUDE_EXIT="3")
    term.expect("status: ready")
    term.sendcontrol("c")
    term.expect("interrupted")
    term.sendline("quit")
    assert finish(term) == 3


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_the_terminal_is_restored_when_the_wrapper_is_told_to_stop(
    tui: Any, sandbox: Sandbox, sig: signal.Signals
) -> None:
    term = tui()
    term.expect("status: ready")
    wrapper = sandbox.runs()[0]["ppid"]
    import os

    os.kill(wrapper, sig)
    assert finish(term) == 128 + sig


def test_a_child_ignoring_the_stop_signal_is_killed_after_the_grace_period(
    tui: Any, sandbox: Sandbox
) -> None:
    term = tui(FAKE_CLAUDE_IGNORE_TERM="1", CLAUDE_WRAP_KILL_GRACE="0.3")
    term.expect("status: ready")
    wrapper = sandbox.runs()[0]["ppid"]
    import os

    os.kill(wrapper, signal.SIGTERM)
    assert finish(term) == 128 + signal.SIGKILL


def test_a_repair_that_fails_in_the_tui_is_said_once_the_session_ends(
    tui: Any, sandbox: Sandbox, token_server: TokenServer
) -> None:
    token_server.script(invalid_grant())
    before = sandbox.creds.read_bytes()
    term = tui(FAKE_CLAUDE_FAIL_FIRST="1")
    term.expect("/login")
    wait_for(lambda: len(token_server.requests) == 1, "the repair attempt")
    for word in ("one", "two"):
        term.sendline(word)
        term.expect("API Error: 401")
    term.sendline("quit")
    term.expect(r"claude-wrap: claude said it is not logged in; could not repair the login: [^\r]*")
    assert b"rejected the stored refresh token" in term.after
    assert finish(term) == 0
    assert len(token_server.requests) == 1  # tried once, never again for the same file
    assert sandbox.creds.read_bytes() == before


def test_a_login_the_preflight_could_not_repair_is_not_tried_again_in_the_tui(
    tui: Any, sandbox: Sandbox, token_server: TokenServer
) -> None:
    sandbox.write(login_doc(scopes=None, expires_in_s=-60))  # due: a refresh, not a local repair
    token_server.script(invalid_grant())
    term = tui()
    # The TUI's own status line, not the pre-flight's line on stderr (which names /login too):
    # a line typed before the TUI runs can be lost on a loaded machine (the full suite saw it).
    term.expect("size: 30x100")
    term.expect("/login")  # Not logged in, as the real one says without scopes
    for word in ("one", "two"):
        term.sendline(word)
        term.expect("API Error: 401")
    term.sendline("quit")
    term.expect("STATUS=")
    assert b"could not repair" not in term.before  # the pre-flight already said why
    assert len(token_server.requests) == 1  # the refused token is never sent again


def test_a_terminal_closed_under_the_wrapper_is_a_hangup_not_an_internal_error(
    sandbox: Sandbox,
) -> None:
    # Found by the soak (issue 9), which ends its TUI sessions as a closed terminal window does:
    # pexpect's interact() restores the terminal's modes on the way out, and on a terminal that
    # is gone that raises termios.error (EIO), which hid the hangup and was logged as a crash.
    sandbox.write(login_doc())
    term: pexpect.spawn[bytes] = pexpect.spawn(
        str(sandbox.shim), [], env=sandbox.shim_env(FAKE_CLAUDE_TUI="1"),
        cwd=str(sandbox.root), dimensions=(30, 100), timeout=20,
    )
    term.expect("status: ready")
    wrapper = term.pid
    assert wrapper is not None  # set by the spawn
    term.close(force=True)  # closes the terminal, then SIGHUP
    wait_for(lambda: not _alive(wrapper), "the wrapper to exit")
    log = sandbox.log.read_text() if sandbox.log.exists() else ""
    assert "Traceback" not in log
    assert "termios" not in log


def _alive(pid: int) -> bool:
    import os

    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
