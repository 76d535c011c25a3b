"""One rule for a claude that cannot be started, whichever way the shim runs it (exec'd, relayed,
under a pty), the shell's: 127 when there is no such file, 126 when it cannot be executed. Each
case is a real binary whose execve fails, run by the real shim."""

from __future__ import annotations

import re
import subprocess

import pexpect
import pytest

from tests.conftest import Sandbox, login_doc

# execve fails with ENOENT (the interpreter is missing) or EACCES (the interpreter is a folder).
CASES = {
    "missing": ("#!/nonexistent/interpreter\n", 127, "No such file or directory"),
    "not executable": ("#!/\n", 126, "Permission denied"),
}


@pytest.fixture
def logged_in(sandbox: Sandbox) -> Sandbox:
    sandbox.write(login_doc())
    return sandbox


def _headless(sandbox: Sandbox, **extra: str) -> tuple[int, str]:
    result = subprocess.run(
        [str(sandbox.shim), "-p", "hi"],
        env=sandbox.shim_env(**extra),
        cwd=sandbox.root,
        input=b"",
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert result.stdout == b""
    return result.returncode, result.stderr.decode()


def _interactive(sandbox: Sandbox) -> tuple[int, str]:
    term = pexpect.spawn(
        "bash",
        ["--norc", "-c", "claude; echo STATUS=$?"],
        env=sandbox.shim_env(),
        cwd=str(sandbox.root),
        timeout=30,
    )
    try:
        term.expect(rb"STATUS=(\d+)\r\n")
        assert isinstance(term.match, re.Match)
        before = term.before
        assert isinstance(before, bytes)
        return int(term.match.group(1)), before.decode().replace("\r\n", "\n")
    finally:
        term.close(force=True)


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("mode", ["exec", "relay", "interactive"])
def test_a_claude_that_cannot_start_ends_as_a_shell_would_say(
    logged_in: Sandbox, mode: str, case: str
) -> None:
    text, status, why = CASES[case]
    logged_in.fake.write_text(text)
    if mode == "exec":
        code, said = _headless(logged_in, CLAUDE_WRAP_WATCH="0")
    elif mode == "relay":
        code, said = _headless(logged_in)
    else:
        code, said = _interactive(logged_in)
    assert code == status, said
    assert said.splitlines() == [f"claude-wrap: cannot run {logged_in.fake}: {why}"]
