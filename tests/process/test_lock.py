"""Interoperation with Claude Code's lock directories, with real processes holding them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from claude_wrap.errors import LockTimeoutError
from claude_wrap.locks import flock, lock
from claude_wrap_testing.tokenserver import TokenServer
from tests.conftest import REPO, Sandbox, login_doc

# A stand-in for a Claude Code process mid-refresh: it takes the two lock directories the way
# proper-lockfile does (mkdir), keeps their mtime fresh, optionally writes a new login, then
# removes them. It prints "held" once it holds both.
HOLDER = r"""
import json, os, sys, time
cfg, hold_s, new_doc = sys.argv[1], float(sys.argv[2]), sys.argv[3]
locks = [os.path.join(cfg, ".oauth_refresh.lock"), os.path.realpath(cfg) + ".lock"]
for lock in locks:
    os.mkdir(lock)
print("held", flush=True)
end = time.time() + hold_s
while time.time() < end:
    for lock in locks:
        os.utime(lock)
    time.sleep(0.2)
if new_doc:
    path = os.path.join(cfg, ".credentials.json")
    tmp = path + ".tmp.holder"
    with open(tmp, "w") as f:
        f.write(new_doc)
    os.replace(tmp, path)
for lock in reversed(locks):
    os.rmdir(lock)
print("released", time.time(), flush=True)
"""


def start_holder(
    sandbox: Sandbox, hold_s: float, new_doc: dict[str, object] | None
) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            HOLDER,
            str(sandbox.cfg),
            str(hold_s),
            json.dumps(new_doc) if new_doc else "",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "held"
    return proc


def lock_dirs(sandbox: Sandbox) -> list[Path]:
    return [sandbox.cfg / ".oauth_refresh.lock", Path(os.path.realpath(sandbox.cfg) + ".lock")]


def test_adopts_the_token_the_holder_wrote_with_no_request(
    sandbox: Sandbox, token_server: TokenServer
) -> None:
    sandbox.write(login_doc(scopes=None, expires_in_s=-60))  # due: not a local repair
    fresh = login_doc(access="sk-ant-oat01-written-by-claude-code-XXXX")
    holder = start_holder(sandbox, 1.5, fresh)
    result = sandbox.wrap("refresh", "--json")
    holder.wait(timeout=10)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["action"] == "adopted"
    assert token_server.requests == []
    assert sandbox.oauth()["accessToken"] == "sk-ant-oat01-written-by-claude-code-XXXX"
    assert not any(p.exists() for p in lock_dirs(sandbox))


def test_waits_for_a_live_holder_then_refreshes_itself(
    sandbox: Sandbox, token_server: TokenServer
) -> None:
    sandbox.write(login_doc(expires_in_s=-5))
    holder = start_holder(sandbox, 1.0, None)  # gives up without writing anything
    result = sandbox.wrap("refresh")
    out, _ = holder.communicate(timeout=10)
    assert result.returncode == 0, result.stderr
    (request,) = token_server.requests
    # It never refreshed while the holder held the lock.
    released = float(out.split()[-1])
    assert request.at >= released
    assert sandbox.oauth()["accessToken"] == token_server.issued[0]["access_token"]


def test_gives_up_after_the_lock_wait_with_one_line(
    sandbox: Sandbox, token_server: TokenServer
) -> None:
    raw = sandbox.write(login_doc(expires_in_s=-5))
    holder = start_holder(sandbox, 4.0, None)
    try:
        result = sandbox.wrap("refresh", env={"CLAUDE_WRAP_LOCK_TIMEOUT": "1"})
    finally:
        holder.wait(timeout=10)
    assert result.returncode == 8
    (line,) = result.stderr.splitlines()
    assert ".oauth_refresh.lock" in line
    assert token_server.requests == []
    assert sandbox.creds.read_bytes() == raw


def test_stale_and_future_locks_are_taken_over(sandbox: Sandbox, token_server: TokenServer) -> None:
    for mtime in (time.time() - 90, time.time() + 3600):
        sandbox.write(login_doc(expires_in_s=-5))
        for path in lock_dirs(sandbox):
            path.mkdir(exist_ok=True)
            os.utime(path, (mtime, mtime))
        result = sandbox.wrap("refresh", env={"CLAUDE_WRAP_LOCK_TIMEOUT": "2"})
        assert result.returncode == 0, result.stderr
        assert not any(p.exists() for p in lock_dirs(sandbox))
    assert len(token_server.requests) == 2


def test_locks_are_held_during_the_request_and_released_after(
    sandbox: Sandbox, token_server: TokenServer
) -> None:
    from claude_wrap_testing.tokenserver import Reply, Request, ok

    seen: list[list[bool]] = []
    mint = ok()

    def observe(server: TokenServer, request: Request) -> Reply:
        seen.append([p.is_dir() for p in lock_dirs(sandbox)])
        return mint(server, request)

    token_server.script(observe)
    sandbox.write(login_doc(expires_in_s=-5))
    assert sandbox.wrap("refresh").returncode == 0
    assert seen == [[True, True]]
    assert not any(p.exists() for p in lock_dirs(sandbox))
    assert not (sandbox.cfg / ".storage-write.lock").exists()


def test_sigterm_mid_refresh_releases_the_locks(
    sandbox: Sandbox, token_server: TokenServer
) -> None:
    import signal

    from claude_wrap_testing.tokenserver import Reply

    raw = sandbox.write(login_doc(expires_in_s=-5))
    token_server.script(Reply(hang=True))
    proc = subprocess.Popen(
        [sys.executable, "-m", "claude_wrap", "refresh"],
        env=sandbox.env,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 20
    while not token_server.requests and time.time() < deadline:
        time.sleep(0.05)
    assert token_server.requests, "the refresh never reached the server"
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=10)
    assert proc.returncode == 128 + signal.SIGTERM
    assert "Traceback" not in err
    assert not any(p.exists() for p in lock_dirs(sandbox))
    assert sandbox.creds.read_bytes() == raw
    assert sorted(p.name for p in sandbox.cfg.iterdir()) == [".credentials.json"]


# Claude Code 2.1.332's owner record (docs/protocol.md section 9), written here by hand for a
# holder.
def owner_record(sandbox: Sandbox, pid: int, *, birth_offset_ms: float = 0.0) -> None:
    from claude_wrap.locks import lockowner

    ns = os.readlink("/proc/self/ns/pid")
    with open("/etc/machine-id") as f:
        machine = f.read().strip()
    with open(f"/proc/{pid}/stat") as f:
        start = f.read().rsplit(")", 1)[1].split()[19]
    lock, legacy = lock_dirs(sandbox)
    birth, legacy_birth = lockowner.birth_ms(str(lock)), lockowner.birth_ms(str(legacy))
    assert birth is not None and legacy_birth is not None, "no birth times on this file system"
    record = {
        "pid": pid,
        "procStart": start,
        "pidDomain": f"linux:{machine}:{ns}",
        "pidSpace": f"{os.uname().nodename}#{ns}",
        "lockBirthtimeMs": birth + birth_offset_ms,
        "legacyLockBirthtimeMs": legacy_birth,
    }
    (sandbox.cfg / ".oauth_refresh.lock.owner").write_text(json.dumps(record))


def held_by(sandbox: Sandbox, *, age_s: float) -> None:
    for path in lock_dirs(sandbox):
        path.mkdir()
        when = time.time() - age_s
        os.utime(path, (when, when))


def test_a_25_s_old_lock_whose_recorded_holder_lives_is_not_taken_over(
    sandbox: Sandbox, token_server: TokenServer
) -> None:
    raw = sandbox.write(login_doc(expires_in_s=-5))
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        held_by(sandbox, age_s=25)  # past 2.1.197's 10 s, short of 2.1.332's 60 s
        owner_record(sandbox, live.pid)
        result = sandbox.wrap("refresh", env={"CLAUDE_WRAP_LOCK_TIMEOUT": "2"})
    finally:
        live.kill()
        live.wait()
    assert result.returncode == 8, result.stderr
    assert token_server.requests == []
    assert sandbox.creds.read_bytes() == raw
    assert all(p.exists() for p in lock_dirs(sandbox))


def test_a_fresh_lock_whose_recorded_holder_is_dead_is_taken_over_at_once(
    sandbox: Sandbox, token_server: TokenServer
) -> None:
    sandbox.write(login_doc(expires_in_s=-5))
    dead = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    held_by(sandbox, age_s=0)
    owner_record(sandbox, dead.pid)  # recorded while it ran, as Claude Code does
    dead.kill()
    dead.wait()
    # A wait far shorter than any stale time: only the owner record can make this succeed.
    result = sandbox.wrap("refresh", env={"CLAUDE_WRAP_LOCK_TIMEOUT": "2"})
    assert result.returncode == 0, result.stderr
    assert len(token_server.requests) == 1
    assert not any(p.exists() for p in lock_dirs(sandbox))
    assert not (sandbox.cfg / ".oauth_refresh.lock.owner").exists()


def test_a_record_whose_birth_time_does_not_match_is_ignored(
    sandbox: Sandbox, token_server: TokenServer
) -> None:
    raw = sandbox.write(login_doc(expires_in_s=-5))
    held_by(sandbox, age_s=0)
    # The record of an earlier folder of the same name, whose holder is dead: it says nothing of
    # this folder's holder (the test above shows the same record with the right birth time works).
    dead = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    owner_record(sandbox, dead.pid, birth_offset_ms=-1500.0)
    dead.kill()
    dead.wait()
    result = sandbox.wrap("refresh", env={"CLAUDE_WRAP_LOCK_TIMEOUT": "2"})
    assert result.returncode == 8, result.stderr
    assert token_server.requests == []
    assert sandbox.creds.read_bytes() == raw


def test_while_holding_the_locks_it_writes_claude_codes_owner_record(
    sandbox: Sandbox, token_server: TokenServer
) -> None:
    from claude_wrap.locks import lockowner
    from claude_wrap_testing.tokenserver import Reply

    sandbox.write(login_doc(expires_in_s=-5))
    token_server.script(Reply(hang=True))
    proc = subprocess.Popen(
        [sys.executable, "-m", "claude_wrap", "refresh"],
        env=sandbox.env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        deadline = time.time() + 20
        while not token_server.requests and time.time() < deadline:
            time.sleep(0.05)
        assert token_server.requests, "the refresh never reached the server"
        text = (sandbox.cfg / ".oauth_refresh.lock.owner").read_text()
        with open(f"/proc/{proc.pid}/stat") as f:
            start = f.read().rsplit(")", 1)[1].split()[19]
    finally:
        proc.kill()
        proc.wait()
    record = json.loads(text)
    ns = os.readlink("/proc/self/ns/pid")
    # The newest Claude Code's key order (2.1.337 appends parentPid), one line, no spaces
    # (JSON.stringify).
    assert list(record) == ["pid", "procStart", "pidDomain", "pidSpace", "lockBirthtimeMs",
                            "legacyLockBirthtimeMs", "parentPid"]
    assert record["parentPid"] == os.getpid()  # this test started it
    assert text == json.dumps(record, separators=(",", ":")).replace(".0,", ",").replace(
        ".0}", "}"
    )
    assert record["pid"] == proc.pid and record["procStart"] == start
    assert record["pidDomain"].endswith(":" + ns) and record["pidSpace"].endswith("#" + ns)
    lock, legacy = lock_dirs(sandbox)
    assert record["lockBirthtimeMs"] == lockowner.birth_ms(str(lock))
    assert record["legacyLockBirthtimeMs"] == lockowner.birth_ms(str(legacy))
    # Killed: the record stays and proves it gone, so the next refresh takes over at once.
    result = sandbox.wrap("refresh", env={"CLAUDE_WRAP_LOCK_TIMEOUT": "2"})
    assert result.returncode == 0, result.stderr
    assert not (sandbox.cfg / ".oauth_refresh.lock.owner").exists()


def test_a_flock_timeout_says_what_is_held_and_that_waiting_helps(tmp_path: Path) -> None:
    # The kernel drops an flock when its holder ends: the message must never send the user to
    # remove a folder (their config folder!), only say what is held and that waiting helps.
    folder = tmp_path / "config"
    folder.mkdir()
    holder = flock.FolderFlock(str(folder))  # its own open file: it conflicts with ours
    assert holder.try_acquire()
    try:
        with pytest.raises(TimeoutError) as caught:
            flock.take_turn(str(folder), 0.2, warm=lambda: None)
    finally:
        holder.release()
    assert isinstance(caught.value, LockTimeoutError)
    message = str(caught.value)
    assert message.startswith(f"another process held the claude-wrap refresh flock of {folder}")
    assert "wait" in message
    assert "remove" not in message
    assert "doctor" not in message
    assert folder.is_dir()


def test_a_refresh_that_waits_out_our_flock_says_that_waiting_helps(tmp_path: Path) -> None:
    # The wait `claude-wrap refresh` and the shim's slow path make (lock.refresh_locks): the same
    # flock, the same advice (the line the shim prints, tests/test_shim_turn.py).
    folder = tmp_path / "config"
    folder.mkdir()
    holder = flock.FolderFlock(str(folder))
    assert holder.try_acquire()
    try:
        with pytest.raises(TimeoutError) as caught, lock.refresh_locks(
            str(folder),
            refresh_path=str(folder / ".oauth_refresh.lock"),
            legacy_path=str(tmp_path / ".claude.lock"),
            wait_s=0.2,
        ):
            pass
    finally:
        holder.release()
    assert isinstance(caught.value, LockTimeoutError)
    message = str(caught.value)
    assert message.startswith(f"another process held the claude-wrap refresh flock of {folder}")
    assert "wait" in message
    assert "remove" not in message
    assert "doctor" not in message
    assert list(folder.iterdir()) == []  # no lock folder was made
