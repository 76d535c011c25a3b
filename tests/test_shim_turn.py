"""A shim that finds the login due while another process of ours holds the config folder's
flock waits for it before importing anything heavy (`site`, the refresher, httpx, loguru): when
the holder leaves the login fine, it runs claude without them and without a token request; when
not, it judges and refreshes as usual. Real processes, a real token server, real files.

Each test learns that the shim has reached the flock from its own `-X importtime` lines (it has
imported claude_wrap.flock), so the holder lets go only once the shim is waiting: no timing.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO

import pytest

from tests.conftest import REPO, Sandbox, login_doc
from tests.tokenserver import Reply, Request, TokenServer, ok

HEAVY = ("site", "claude_wrap.refresher", "httpx", "loguru", "json", "pathlib")
# Not even os before the turn (fspath.py): ~1.1 ms of CPU of each of a herd of shims.
OS_AND_ITS_OWN = {"os", "posixpath", "genericpath", "_collections_abc"}

# Holds the flock our processes take on the config folder until told (a line on stdin) to go.
FLOCK_HOLDER = r"""
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDONLY | os.O_DIRECTORY)
fcntl.flock(fd, fcntl.LOCK_EX)
print("held", flush=True)
sys.stdin.readline()
os.close(fd)
"""


def _hold_flock(sandbox: Sandbox) -> subprocess.Popen[str]:
    """Another process of ours holding the config folder's flock (FLOCK_HOLDER)."""
    return subprocess.Popen(
        [sys.executable, "-c", FLOCK_HOLDER, str(sandbox.cfg)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


def _start_shim(sandbox: Sandbox, env: dict[str, str]) -> subprocess.Popen[bytes]:
    """`claude -p hi` through the shim, telling what it imports on stderr as it goes."""
    python = sandbox.shim.read_text().splitlines()[0][2:].split()[0]
    return subprocess.Popen(
        [python, "-I", "-S", "-X", "importtime", str(sandbox.shim), "-p", "hi"],
        env=env,
        cwd=sandbox.root,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def _imported(line: bytes) -> str:
    return line.decode(errors="replace").split("|")[-1].strip()


def _until_at_the_flock(stderr: IO[bytes]) -> list[bytes]:
    """Read the shim's stderr until it has imported claude_wrap.flock (it is about to wait)."""
    lines = []
    for line in iter(stderr.readline, b""):
        lines.append(line)
        if _imported(line) == "claude_wrap.flock":
            return lines
    raise AssertionError(b"".join(lines).decode(errors="replace"))


def _until_waiting(pid: int) -> None:
    """Until `pid` waits in the kernel for an flock: /proc/locks lists it blocked, after `->`."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        for line in Path("/proc/locks").read_text().splitlines():
            fields = line.split()
            if "->" in fields and fields[fields.index("->") + 4 :][:1] == [str(pid)]:
                return
        time.sleep(0.01)
    raise AssertionError(f"{pid} never waited for an flock")


def _written_so_far(stderr: IO[bytes]) -> list[bytes]:
    """What the shim has written to stderr and we have not read yet, without waiting for more."""
    os.set_blocking(stderr.fileno(), False)
    try:
        data = stderr.read() or b""
    finally:
        os.set_blocking(stderr.fileno(), True)
    return data.splitlines(keepends=True)


def _finish(proc: subprocess.Popen[bytes], seen: list[bytes]) -> tuple[bytes, list[str]]:
    out, err = proc.communicate(timeout=60)
    lines = seen + err.splitlines(keepends=True)
    imported = [_imported(x) for x in lines if x.startswith(b"import time:")]
    others = [x.decode(errors="replace") for x in lines if not x.startswith(b"import time:")]
    assert proc.returncode == 0, (out, others)
    return out, others + imported


def test_a_waiting_shim_adopts_the_refresh_of_the_one_holding_the_flock(
    sandbox: Sandbox, token_server: TokenServer
) -> None:
    sandbox.write(login_doc(expires_in_s=-60))
    answer = threading.Event()
    make = ok()

    def held_answer(server: TokenServer, request: Request) -> Reply:
        answer.wait(30)  # the refreshing process holds the flock until we let it have its token
        return make(server, request)

    token_server.script(held_answer)
    holder = subprocess.Popen(
        [sys.executable, "-m", "claude_wrap", "refresh"],
        env=sandbox.env,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        while not token_server.requests:  # it holds the flock and its request is out
            assert holder.poll() is None, holder.communicate()
            threading.Event().wait(0.02)
        shim = _start_shim(sandbox, sandbox.shim_env())
        assert shim.stderr is not None
        seen = _until_at_the_flock(shim.stderr)
    finally:
        answer.set()
    assert holder.wait(timeout=60) == 0
    out, said = _finish(shim, seen)
    assert out.startswith(b"fake answer")
    assert len(token_server.requests) == 1  # the holder's: the waiter sent nothing
    (run,) = sandbox.runs()
    assert run["access_token"] == token_server.issued[0]["access_token"]
    for heavy in HEAVY:
        assert heavy not in said, heavy


def test_a_waiting_shim_refreshes_itself_when_the_holder_left_the_login_due(
    sandbox: Sandbox, token_server: TokenServer
) -> None:
    sandbox.write(login_doc(expires_in_s=-60))
    holder = _hold_flock(sandbox)
    assert holder.stdin is not None and holder.stdout is not None
    try:
        assert holder.stdout.readline().strip() == "held"
        shim = _start_shim(sandbox, sandbox.shim_env())
        assert shim.stderr is not None
        seen = _until_at_the_flock(shim.stderr)
        assert token_server.requests == []  # nothing goes out while the flock is held
    finally:
        holder.stdin.close()  # let go, having refreshed nothing
        holder.wait(timeout=30)
    out, said = _finish(shim, seen)
    assert out.startswith(b"fake answer")
    assert len(token_server.requests) == 1
    assert "claude_wrap.refresher" in said
    assert sandbox.oauth()["accessToken"] == token_server.issued[0]["access_token"]


def test_a_flock_held_past_the_lock_wait_is_one_line_and_claude_runs(
    sandbox: Sandbox, token_server: TokenServer
) -> None:
    raw = sandbox.write(login_doc(expires_in_s=-60))
    holder = _hold_flock(sandbox)
    assert holder.stdin is not None and holder.stdout is not None
    try:
        assert holder.stdout.readline().strip() == "held"
        result = sandbox.claude("-p", "hi", env=sandbox.shim_env(CLAUDE_WRAP_LOCK_TIMEOUT="0.5"))
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)
    (line,) = result.stderr.decode().splitlines()
    assert line.startswith("claude-wrap: another process held the claude-wrap refresh flock of ")
    assert line.endswith("(running claude anyway)")
    assert token_server.requests == []
    assert sandbox.creds.read_bytes() == raw
    assert len(sandbox.runs()) == 1  # claude ran (and, its login expired, said so)


@pytest.mark.skipif(not Path("/proc/locks").exists(), reason="tells waiters by /proc/locks")
def test_a_shim_imports_no_os_before_its_turn(sandbox: Sandbox, token_server: TokenServer) -> None:
    sandbox.write(login_doc(expires_in_s=-60))
    holder = _hold_flock(sandbox)
    assert holder.stdin is not None and holder.stdout is not None
    try:
        assert holder.stdout.readline().strip() == "held"
        shim = _start_shim(sandbox, sandbox.shim_env())
        assert shim.stderr is not None
        seen = _until_at_the_flock(shim.stderr)
        _until_waiting(shim.pid)  # in the kernel, at its turn: it has imported all it will
        seen += _written_so_far(shim.stderr)
        before = {_imported(x) for x in seen if x.startswith(b"import time:")}
        assert not OS_AND_ITS_OWN & before, OS_AND_ITS_OWN & before
    finally:
        holder.stdin.close()  # let go, having refreshed nothing: the shim refreshes itself
        holder.wait(timeout=30)
    _, said = _finish(shim, seen)
    assert len(token_server.requests) == 1
    assert "os" in said  # the yardstick sees os: imported after the turn, by the refresh
