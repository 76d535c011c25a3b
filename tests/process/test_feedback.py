"""The spinner: a refresh that takes over a second shows one line on a terminal's stderr and
erases it; with stderr not a terminal, nothing at all. Real ptys (pexpect), a slow real server."""

from __future__ import annotations

import pexpect

from claude_wrap_testing.tokenserver import Reply, Request, TokenServer, ok
from tests.conftest import WRAP, Sandbox, login_doc

TEXT = "refreshing Claude login..."
ERASE = "\r\x1b[K"


def slow(token_server: TokenServer) -> None:
    answer = ok()

    def delayed(server: TokenServer, request: Request) -> Reply:
        reply = answer(server, request)
        reply.delay = 1.5  # past the spinner's one second
        return reply

    token_server.script(delayed)


def spawn(argv: list[str], env: dict[str, str]) -> pexpect.spawn[str]:
    return pexpect.spawn(argv[0], argv[1:], env=env, encoding="utf-8", timeout=30)


def test_refresh_in_a_terminal_shows_the_line_then_erases_it(
    sandbox: Sandbox, token_server: TokenServer
) -> None:
    sandbox.write(login_doc(expires_in_s=-60))
    slow(token_server)
    child = spawn([*WRAP, "refresh"], sandbox.env)
    try:
        child.expect_exact(TEXT)
        child.expect_exact(ERASE)
        child.expect_exact("refreshed (expired -> ok)")
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    assert child.exitstatus == 0
    assert isinstance(child.before, str)  # the text read since the last match
    assert TEXT not in child.before  # nothing was drawn after the erase


def test_the_shim_preflight_spinner_is_gone_before_claude_writes(
    sandbox: Sandbox, token_server: TokenServer
) -> None:
    sandbox.write(login_doc(scopes=None, expires_in_s=-60))  # due: a refresh, not a local repair
    slow(token_server)
    child = spawn([str(sandbox.shim), "--print", "hi"], sandbox.shim_env())
    try:
        child.expect_exact(TEXT)
        child.expect_exact(ERASE)
        child.expect_exact("fake answer")
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    assert child.exitstatus == 0


def test_nothing_at_all_when_stderr_is_not_a_terminal(
    sandbox: Sandbox, token_server: TokenServer
) -> None:
    sandbox.write(login_doc(expires_in_s=-60))
    slow(token_server)
    result = sandbox.wrap("refresh")
    assert result.returncode == 0
    assert result.stderr == ""
    assert len(token_server.requests) == 1

    # Expired too: a stripped login whose token is still good is repaired locally (issue 14),
    # and this is about a slow refresh.
    sandbox.write(login_doc(scopes=None, expires_in_s=-60))
    slow(token_server)
    piped = sandbox.claude("--print", "hi")
    assert piped.returncode == 0
    assert piped.stderr == b""
    assert len(token_server.requests) == 2
