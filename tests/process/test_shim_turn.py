"""A shim that finds the login due while another process of ours holds the config folder's
flock waits for it before importing anything heavy (`site`, the refresher, httpx, loguru): when
the holder leaves the login fine, it runs claude without them and without a token request; when
not, it judges and refreshes as usual. Real processes, a real token server, real files.

Each test learns that the shim has reached the flock from its own `-X importtime` lines (it has
imported claude_wrap.locks.flock), so the holder lets go only once the shim is waiting: no timing.
"""

from __future__ import annotations

import fcntl
import os
import select
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO

from claude_wrap_testing.tokenserver import Reply, Request, TokenServer, ok
from tests.conftest import REPO, Sandbox, login_doc

HEAVY = ("site", "claude_wrap.refresh.refresher", "httpx", "loguru", "json", "pathlib")
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
    """Read the shim's stderr until it has imported claude_wrap.locks.flock (about to wait)."""
    lines = []
    for line in iter(stderr.readline, b""):
        lines.append(line)
        if _imported(line) == "claude_wrap.locks.flock":
            return lines
    raise AssertionError(b"".join(lines).decode(errors="replace"))


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
    assert "claude_wrap.refresh.refresher" in said
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


# The gate (flock.py): a holder of the folder's flock that is getting its request ready also
# holds the flock of a file of ours named for the folder; waiters warm up only once it lets go.
GATE_HOLDER = r"""
import sys
sys.path.insert(0, sys.argv[1])
from claude_wrap.locks import flock
held = flock.take_turn(sys.argv[2], 30, sys.argv[3])
print("held" if held is not None else "not first", flush=True)
sys.stdin.readline()
held.open_gate()
print("gate open", flush=True)
sys.stdin.readline()
held.release()
"""
GATE_WAITER = r"""
import sys
sys.path.insert(0, sys.argv[1])
from claude_wrap.locks import flock
turn = flock.take_turn(sys.argv[2], 30, sys.argv[3], lambda: print("warm", flush=True))
print("turn" if turn is None else "first", flush=True)
"""


def _gate(sandbox: Sandbox) -> Path:
    st = sandbox.cfg.stat()
    return sandbox.state / "claude-wrap" / f"gate-{st.st_dev}-{st.st_ino}"


def _blocked_on(pid: int, path: Path) -> bool:
    """Whether process `pid` waits for a lock of the file at `path` (the kernel's /proc/locks:
    a waiting request's line has `->` and the holder's pid, device and inode)."""
    inode = f":{path.stat().st_ino}"
    for line in Path("/proc/locks").read_text().splitlines():
        fields = line.split()
        if "->" in fields and str(pid) in fields:
            at = fields.index(str(pid))
            if fields[at + 1].endswith(inode):
                return True
    return False


def _state(sandbox: Sandbox) -> Path:
    """Our state folder, which a first run makes (the gate's file lives there)."""
    folder = sandbox.state / "claude-wrap"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _until_blocked_on(proc: subprocess.Popen[str] | subprocess.Popen[bytes], path: Path) -> None:
    deadline = time.monotonic() + 30
    while not _blocked_on(proc.pid, path):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, f"{proc.pid} never waited on {path}"
        time.sleep(0.01)


def _nothing_said(proc: subprocess.Popen[str]) -> bool:
    assert proc.stdout is not None
    return not select.select([proc.stdout], [], [], 0)[0]


def _gate_holder(sandbox: Sandbox, script: str = GATE_HOLDER) -> subprocess.Popen[str]:
    """A process holding the config folder's flock and its gate, as a shim getting its request
    ready does (GATE_HOLDER); it says "held" first."""
    holder = subprocess.Popen(
        [sys.executable, "-c", script, str(REPO), str(sandbox.cfg), str(_state(sandbox))],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None
    assert holder.stdout.readline().strip() == "held"
    return holder


def test_waiters_warm_up_only_once_the_holder_opens_its_gate(sandbox: Sandbox) -> None:
    sandbox.write(login_doc(expires_in_s=-60))
    args = [str(REPO), str(sandbox.cfg), str(_state(sandbox))]
    holder = _gate_holder(sandbox)
    assert holder.stdin is not None and holder.stdout is not None
    waiter = subprocess.Popen(
        [sys.executable, "-c", GATE_WAITER, *args], stdout=subprocess.PIPE, text=True
    )
    assert waiter.stdout is not None
    try:
        _until_blocked_on(waiter, _gate(sandbox))  # at the gate, the holder getting ready
        assert _nothing_said(waiter)
        holder.stdin.write("\n")
        holder.stdin.flush()
        assert holder.stdout.readline().strip() == "gate open"
        assert waiter.stdout.readline().strip() == "warm"
        _until_blocked_on(waiter, sandbox.cfg)  # then waits for the flock itself
        assert _nothing_said(waiter)
        holder.stdin.write("\n")
        holder.stdin.flush()
        assert waiter.stdout.readline().strip() == "turn"
    finally:
        holder.kill()
        waiter.kill()
        holder.wait(timeout=30)
        waiter.wait(timeout=30)


def test_a_holder_that_sends_nothing_opens_its_gate_when_it_lets_go(sandbox: Sandbox) -> None:
    sandbox.write(login_doc(expires_in_s=-60))
    args = [str(REPO), str(sandbox.cfg), str(_state(sandbox))]
    holder = _gate_holder(sandbox, GATE_HOLDER.replace("held.open_gate()\n", ""))
    assert holder.stdin is not None and holder.stdout is not None
    try:
        holder.stdin.write("\n")
        holder.stdin.flush()
        assert holder.stdout.readline().strip() == "gate open"  # but it is not: not asked to
        waiter = subprocess.Popen(
            [sys.executable, "-c", GATE_WAITER, *args], stdout=subprocess.PIPE, text=True
        )
        assert waiter.stdout is not None
        _until_blocked_on(waiter, _gate(sandbox))
        holder.stdin.write("\n")  # release(): the gate and the flock at once
        holder.stdin.flush()
        assert waiter.stdout.read().split() == ["warm", "turn"]
    finally:
        holder.kill()
        holder.wait(timeout=30)
    assert waiter.wait(timeout=30) == 0


def test_a_waiter_that_finds_no_gate_warms_up_at_once(sandbox: Sandbox) -> None:
    holder = _hold_flock(sandbox)  # holds the folder's flock, no gate (as `claude-wrap refresh`)
    assert holder.stdin is not None and holder.stdout is not None
    args = [str(REPO), str(sandbox.cfg), str(_state(sandbox))]
    try:
        assert holder.stdout.readline().strip() == "held"
        waiter = subprocess.Popen(
            [sys.executable, "-c", GATE_WAITER, *args], stdout=subprocess.PIPE, text=True
        )
        assert waiter.stdout is not None
        assert waiter.stdout.readline().strip() == "warm"
        _until_blocked_on(waiter, sandbox.cfg)
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)
    assert waiter.stdout.readline().strip() == "turn"
    assert waiter.wait(timeout=30) == 0


def test_the_refreshing_shim_opens_its_gate_once_its_request_is_out_and_a_waiter_warms_up(
    sandbox: Sandbox, token_server: TokenServer
) -> None:
    """Two shims on one expired login: the first takes the flock and refreshes; while the
    server holds its answer, the second has passed the gate and imported the relay (it warmed
    up), and is waiting for the flock. Then both run claude on the one new token."""
    sandbox.write(login_doc(expires_in_s=-60))
    answer = threading.Event()
    gate_free: list[bool] = []
    make = ok()

    def held_answer(server: TokenServer, request: Request) -> Reply:
        fd = os.open(_gate(sandbox), os.O_RDONLY)
        try:  # the refresher's request is out: its gate must be open
            deadline = time.monotonic() + 10
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
                except BlockingIOError:
                    if time.monotonic() < deadline:
                        time.sleep(0.01)
                        continue
                    gate_free.append(False)
                else:
                    gate_free.append(True)
                break
        finally:
            os.close(fd)
        answer.wait(30)
        return make(server, request)

    token_server.script(held_answer)
    _state(sandbox)  # as after any earlier run: where the refresher makes its gate
    first = subprocess.Popen(
        [str(sandbox.shim), "-p", "hi"],
        env=sandbox.shim_env(),
        cwd=sandbox.root,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        while not gate_free:
            assert first.poll() is None, first.communicate()
            time.sleep(0.01)
        assert gate_free == [True]
        second = _start_shim(sandbox, sandbox.shim_env())
        assert second.stderr is not None
        seen = []
        for line in iter(second.stderr.readline, b""):
            seen.append(line)
            if _imported(line) == "claude_wrap.watch.relay":
                break
        assert _imported(seen[-1]) == "claude_wrap.watch.relay", b"".join(seen)
        _until_blocked_on(second, sandbox.cfg)  # warmed up, waiting for its turn
    finally:
        answer.set()
    out, err = first.communicate(timeout=60)
    assert first.returncode == 0, err
    out2, said = _finish(second, seen)
    assert out.startswith(b"fake answer") and out2.startswith(b"fake answer")
    assert len(token_server.requests) == 1
    assert [run["access_token"] for run in sandbox.runs()] == [
        token_server.issued[0]["access_token"]
    ] * 2
    for heavy in HEAVY:
        assert heavy not in said, heavy


def test_a_shim_imports_no_os_before_it_waits(sandbox: Sandbox, token_server: TokenServer) -> None:
    """Everything a waiter does before it waits is on a herd's critical path (fspath.py)."""
    sandbox.write(login_doc(expires_in_s=-60))
    holder = _gate_holder(sandbox)
    try:
        shim = _start_shim(sandbox, sandbox.shim_env())
        assert shim.stderr is not None
        seen = _until_at_the_flock(shim.stderr)
        _until_blocked_on(shim, _gate(sandbox))  # in the kernel: it has imported all it will
        seen += _written_so_far(shim.stderr)
        before = {_imported(x) for x in seen if x.startswith(b"import time:")}
        assert not OS_AND_ITS_OWN & before, OS_AND_ITS_OWN & before
    finally:
        holder.kill()  # lets go of both, having refreshed nothing: the shim refreshes itself
        holder.wait(timeout=30)
    _, said = _finish(shim, seen)
    assert len(token_server.requests) == 1
    assert "os" in said  # the yardstick sees os: imported after the wait (the relay, the refresh)
