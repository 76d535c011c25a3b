"""Claude Code's lock folders: a live holder (heartbeat) is waited for, a bounded time, and never
raced; the token it wrote is adopted; a stale lock (old mtime, or one in the future) and a lock a
killed claude-wrap left behind are taken over."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import psutil
import pytest

from claude_wrap_testing.tokenserver import Answer, Reply, Request, TokenServer
from tests.conftest import WRAP
from tests.reliability.conftest import (
    FIGURES,
    RSandbox,
    count_requests,
    privileged_or_fail,
    user_lines,
    watch,
)
from tests.reliability.helpers import expired, lock_dirs, unique_login


class ForeignHolder:
    """Claude Code mid-refresh: its lock folders, touched every 0.5 s like proper-lockfile."""

    def __init__(self, paths: list[Path]) -> None:
        self.paths = paths
        self.stop = threading.Event()
        self.released_at = 0.0
        self.thread = threading.Thread(target=self._beat, daemon=True)

    def _beat(self) -> None:
        while not self.stop.wait(0.5):
            for p in self.paths:
                os.utime(p)

    def __enter__(self) -> ForeignHolder:
        for p in self.paths:
            p.mkdir()
        self.thread.start()
        return self

    def release(self) -> None:
        if not self.stop.is_set():
            self.stop.set()
            self.thread.join()
            for p in reversed(self.paths):
                p.rmdir()
            self.released_at = time.time()

    def __exit__(self, *exc: object) -> None:
        self.release()


def refresh_locks(sandbox: RSandbox) -> list[Path]:
    return [sandbox.cfg / ".oauth_refresh.lock", Path(os.path.realpath(sandbox.cfg) + ".lock")]


def start_refresh(sandbox: RSandbox, **env: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*WRAP, "refresh"],
        env={**sandbox.env, **env},
        cwd=sandbox.root,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(sandbox: RSandbox, proc: subprocess.Popen[str]) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=60)
    sandbox.keep("refresh stdout", out)
    sandbox.keep("refresh stderr", err)
    return proc.returncode, out, err


def wait_until_waiting(sandbox: RSandbox) -> None:
    """Until the wrapper has logged that it is refreshing under the locks (it then waits)."""
    for _ in range(400):
        if sandbox.log.exists() and "refreshing under the locks" in sandbox.log.read_text():
            time.sleep(0.3)  # a few of its polls
            return
        time.sleep(0.025)
    raise AssertionError("the wrapper never reached the locks")


def test_adopts_the_token_the_holder_wrote_and_sends_nothing(
    sandbox: RSandbox, token_server: TokenServer
) -> None:
    sandbox.write(expired("adopt"))
    holders_login = unique_login("holder")
    watch().secrets.add(holders_login["claudeAiOauth"]["accessToken"])
    watch().secrets.add(holders_login["claudeAiOauth"]["refreshToken"])
    with ForeignHolder(refresh_locks(sandbox)) as holder:
        proc = start_refresh(sandbox)
        wait_until_waiting(sandbox)
        assert proc.poll() is None, "it did not wait for the holder"
        # Claude Code writes its new login (temp file + rename), then releases.
        tmp = sandbox.cfg / ".credentials.json.tmp.0a1b2c3d"
        tmp.write_text(json.dumps(holders_login))
        tmp.rename(sandbox.creds)
        holder.release()
        code, out, err = finish(sandbox, proc)
    assert code == 0, err
    assert "another process had already refreshed the login" in out
    assert sandbox.read() == holders_login
    assert count_requests(token_server) == 0
    FIGURES["locks: adoptions"] += 1


def test_waits_for_the_holder_then_refreshes_after_it_released(
    sandbox: RSandbox, token_server: TokenServer
) -> None:
    sandbox.write(expired("after"))
    with ForeignHolder(refresh_locks(sandbox)) as holder:
        proc = start_refresh(sandbox)
        wait_until_waiting(sandbox)
        assert token_server.requests == [], "refreshed while Claude Code held the lock"
        holder.release()
        code, _, err = finish(sandbox, proc)
    assert code == 0, err
    assert count_requests(token_server) == 1
    assert token_server.requests[0].at >= holder.released_at
    assert lock_dirs(sandbox.cfg) == []


def test_a_holder_that_never_lets_go_bounds_the_wait(
    sandbox: RSandbox, token_server: TokenServer
) -> None:
    raw = sandbox.write(expired("held"))
    env = {"CLAUDE_WRAP_LOCK_TIMEOUT": "1.5"}
    with ForeignHolder(refresh_locks(sandbox)):
        result = sandbox.wrap("refresh", env=env)
        runs = len(sandbox.runs())
        shim = sandbox.claude("hi", env=sandbox.shim_env(**env))
        assert lock_dirs(sandbox.cfg) == [".oauth_refresh.lock", ".claude.lock"]
    assert result.returncode == 8
    [line] = user_lines(result.stderr)
    assert line.startswith("claude-wrap: another process held ")
    assert ".oauth_refresh.lock for 2 s" in line
    assert shim.returncode == 0
    assert len(sandbox.runs()) == runs + 1, "claude was not launched"
    [shim_line] = user_lines(shim.stderr)
    assert shim_line.endswith("(running claude anyway)")
    assert sandbox.creds.read_bytes() == raw
    assert count_requests(token_server) == 0


@pytest.mark.parametrize("lock", [".oauth_refresh.lock", "legacy", ".storage-write.lock"])
@pytest.mark.parametrize("age_s", [-120.0, 3600.0], ids=["old", "future"])
def test_a_stale_lock_is_taken_over(
    sandbox: RSandbox, token_server: TokenServer, lock: str, age_s: float
) -> None:
    sandbox.write(expired("stale"))
    path = Path(os.path.realpath(sandbox.cfg) + ".lock") if lock == "legacy" else sandbox.cfg / lock
    path.mkdir()
    when = time.time() + age_s
    os.utime(path, (when, when))
    # The wait is shorter than any stale time: only a takeover can make this succeed.
    result = sandbox.wrap("refresh", env={"CLAUDE_WRAP_LOCK_TIMEOUT": "2"})
    assert result.returncode == 0, result.stderr
    assert count_requests(token_server) == 1
    assert not path.exists()
    FIGURES["locks: stale locks taken over"] += 1


def test_a_killed_wrappers_locks_are_taken_over_at_once(
    sandbox: RSandbox, token_server: TokenServer
) -> None:
    old = expired("killed")
    sandbox.write(old)
    token_server.script(Reply(hang=True))
    proc = start_refresh(sandbox)
    for _ in range(400):
        if token_server.requests:
            break
        time.sleep(0.025)
    assert token_server.requests, "the wrapper never sent its request"
    proc.send_signal(signal.SIGKILL)
    finish(sandbox, proc)
    assert lock_dirs(sandbox.cfg) == [".oauth_refresh.lock", ".claude.lock"]
    # Far shorter than the 60 s stale time: the folders are known to be a dead claude-wrap's.
    result = sandbox.wrap("refresh", env={"CLAUDE_WRAP_LOCK_TIMEOUT": "2"})
    assert result.returncode == 0, result.stderr
    assert lock_dirs(sandbox.cfg) == []
    assert count_requests(token_server) == 2
    FIGURES["locks: killed holders taken over"] += 1


def test_a_killed_wrappers_owner_record_alone_proves_it_gone(
    sandbox: RSandbox, token_server: TokenServer
) -> None:
    """Without our own holder records (removed here), the owner record that claude-wrap writes in
    Claude Code's format is enough: the next refresh takes the fresh locks over at once, as
    2.1.332 does (tests/e2e/test_lock_interop.py proves it takes them itself)."""
    import shutil

    sandbox.write(expired("owner"))
    token_server.script(Reply(hang=True))
    proc = start_refresh(sandbox)
    for _ in range(400):
        if token_server.requests:
            break
        time.sleep(0.025)
    assert token_server.requests, "the wrapper never sent its request"
    record = json.loads((sandbox.cfg / ".oauth_refresh.lock.owner").read_text())
    assert record["pid"] == proc.pid
    proc.send_signal(signal.SIGKILL)
    finish(sandbox, proc)
    shutil.rmtree(sandbox.state / "claude-wrap" / "locks")  # our holder records
    assert lock_dirs(sandbox.cfg) == [".oauth_refresh.lock", ".claude.lock"]
    result = sandbox.wrap("refresh", env={"CLAUDE_WRAP_LOCK_TIMEOUT": "2"})
    assert result.returncode == 0, result.stderr
    assert lock_dirs(sandbox.cfg) == []
    assert not (sandbox.cfg / ".oauth_refresh.lock.owner").exists()
    assert count_requests(token_server) == 2
    FIGURES["locks: killed holders taken over by owner record"] += 1


def test_a_live_unrecorded_lock_is_not_taken_over_early(
    sandbox: RSandbox, token_server: TokenServer
) -> None:
    """A lock folder without a heartbeat for 25 s and no owner record (Claude Code 2.1.332 is
    still within its 60 s stale time) is not ours to take."""
    raw = sandbox.write(expired("fresh"))
    path = sandbox.cfg / ".oauth_refresh.lock"
    path.mkdir()
    when = time.time() - 25
    os.utime(path, (when, when))
    result = sandbox.wrap("refresh", env={"CLAUDE_WRAP_LOCK_TIMEOUT": "1"})
    assert result.returncode == 8
    assert count_requests(token_server) == 0
    assert sandbox.creds.read_bytes() == raw


def test_waits_for_claude_codes_write_lock_before_writing(
    sandbox: RSandbox, token_server: TokenServer
) -> None:
    sandbox.write(expired("write"))
    token_server.default = _delayed(token_server.default, 0.3)
    with ForeignHolder([sandbox.cfg / ".storage-write.lock"]) as holder:
        proc = start_refresh(sandbox)
        for _ in range(400):
            if token_server.requests:
                break
            time.sleep(0.025)
        time.sleep(1.0)  # the answer is in; the wrapper now waits for the write lock
        assert proc.poll() is None, "it wrote while Claude Code held the write lock"
        holder.release()
        code, _, err = finish(sandbox, proc)
    assert code == 0, err
    assert sandbox.creds.stat().st_mtime >= holder.released_at - 0.01
    assert count_requests(token_server) == 1


def _delayed(step: Answer, delay: float) -> Answer:
    def make(server: TokenServer, request: Request) -> Reply:
        reply = step(server, request)
        reply.delay = delay
        return reply

    return make


def test_a_lock_from_another_pid_namespace_is_not_taken_over_early(
    sandbox: RSandbox, token_server: TokenServer
) -> None:
    """A claude-wrap in a container sharing the folder: its pid means nothing here, so its lock
    folders wait out the stale time like anyone else's."""
    privileged_or_fail("a pid namespace (unshare --pid)")
    probe = subprocess.run(["unshare", "--pid", "--fork", "true"], capture_output=True, check=False)
    if probe.returncode != 0:
        pytest.fail(f"`unshare --pid --fork` failed: {probe.stderr.decode().strip()}")
    raw = sandbox.write(expired("pidns"))
    token_server.script(Reply(hang=True))
    # Inside the namespace pids count up from 1: fork until the wrapper gets a pid that is dead
    # out here, so that only the namespace check can keep its folders from being taken over.
    pid = next(p for p in range(100, 30000) if not psutil.pid_exists(p))
    spin = 'i=0; while [ $i -lt "$0" ]; do /bin/true; i=$((i+1)); done; "$@"'
    proc = subprocess.Popen(
        [
            *("unshare", "--pid", "--fork", "--kill-child", "--"),
            *("sh", "-c", spin, str(pid - 2), *WRAP, "refresh"),
        ],
        env=sandbox.env,
        cwd=sandbox.root,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    for _ in range(400):
        if token_server.requests:
            break
        time.sleep(0.025)
    assert token_server.requests, "the wrapper never sent its request"
    proc.send_signal(signal.SIGKILL)  # --kill-child: the wrapper dies with it
    finish(sandbox, proc)
    assert lock_dirs(sandbox.cfg) == [".oauth_refresh.lock", ".claude.lock"]
    assert f" {pid} INFO login is expired" in sandbox.log.read_text(), "not the pid planned"
    assert not psutil.pid_exists(pid)
    result = sandbox.wrap("refresh", env={"CLAUDE_WRAP_LOCK_TIMEOUT": "1"})
    assert result.returncode == 8, result.stderr
    assert sandbox.creds.read_bytes() == raw
    assert count_requests(token_server) == 1


def test_after_spending_the_token_a_dead_write_lock_is_waited_out(
    sandbox: RSandbox, token_server: TokenServer
) -> None:
    """A write lock Claude Code left when it died (no heartbeat) turns stale 15 s after its last
    touch. Here that is 6 s after the answer came: a wrapper that gave up sooner would have spent
    the refresh token and lost the new one."""
    sandbox.write(expired("deadwrite"))
    lock = sandbox.cfg / ".storage-write.lock"
    lock.mkdir()
    then = time.time() - 9
    os.utime(lock, (then, then))
    result = sandbox.wrap("refresh")
    assert result.returncode == 0, result.stderr
    assert sandbox.oauth()["accessToken"] == token_server.issued[0]["access_token"]
    assert count_requests(token_server) == 1
    assert not lock.exists()
