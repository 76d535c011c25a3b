"""`claude-wrap doctor`: each finding with its fix, `--fix` for stale locks, exit 0 only when
healthy. Real files, real lock folders, a real running fake claude."""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tests.conftest import Sandbox, login_doc


def doctor(sandbox: Sandbox, *args: str, env: dict[str, str] | None = None) -> tuple[int, Any]:
    result = sandbox.wrap("doctor", "--json", *args, env=env or {})
    assert "Traceback" not in result.stderr, result.stderr
    return result.returncode, json.loads(result.stdout)


def by_check(data: Any, check: str) -> list[dict[str, Any]]:
    return [f for f in data["findings"] if f["check"] == check]


def age(path: Path, seconds: float) -> None:
    when = time.time() - seconds
    os.utime(path, (when, when))


def test_a_healthy_setup_exits_zero(sandbox: Sandbox) -> None:
    sandbox.write(login_doc())
    code, data = doctor(sandbox, env=sandbox.shim_env())
    assert code == 0, json.dumps(data, indent=2)
    assert data["healthy"] is True
    real = by_check(data, "real claude")[0]
    assert real["path"] == str(sandbox.fake)
    assert real["version"] == "2.1.197 (Claude Code)"
    assert by_check(data, "shim")[0]["path"] == str(sandbox.shim)
    assert by_check(data, "login")[0]["state"] == "ok"
    assert by_check(data, "log")[0]["path"] == str(sandbox.log)
    assert all(f["fix"] is None for f in data["findings"])


def test_it_says_when_the_real_claude_is_newer_than_the_newest_tested(sandbox: Sandbox) -> None:
    from claude_wrap.config import versions

    sandbox.write(login_doc())
    newest = versions.parse(versions.newest_tested())
    assert newest is not None
    newer = ".".join(map(str, (*newest[:-1], newest[-1] + 1)))
    result = sandbox.wrap("doctor", env={**sandbox.shim_env(), "FAKE_CLAUDE_VERSION": newer})
    assert result.returncode == 0, result.stdout  # said, not a problem
    lines = result.stdout.splitlines()
    assert f"OK    real claude: {sandbox.fake} ({newer} (Claude Code))" in lines
    at = lines.index(
        f"OK    claude version: Claude Code {newer} is newer than the newest release claude-wrap "
        f"was tested with ({versions.newest_tested()})"
    )
    assert "scripts/compat latest" in lines[at + 1]
    # What to do with a FAIL: report it with the table, pin the last release that passed.
    assert "report it with the table" in lines[at + 1]
    assert f"@anthropic-ai/claude-code@{versions.newest_tested()}" in lines[at + 1]
    # The newest tested release itself: no such line.
    same = sandbox.wrap(
        "doctor", env={**sandbox.shim_env(), "FAKE_CLAUDE_VERSION": versions.newest_tested()}
    )
    assert "claude version" not in same.stdout
    assert f"({versions.newest_tested()} (Claude Code))" in same.stdout


def test_every_problem_comes_with_its_fix_and_fix_repairs_the_safe_ones(
    sandbox: Sandbox,
) -> None:
    sandbox.write(login_doc(scopes=None), mode=0o644)
    stale = sandbox.cfg / ".oauth_refresh.lock"
    stale.mkdir()
    age(stale, 90)
    future = Path(str(sandbox.cfg) + ".lock")  # the legacy lock, beside the folder
    future.mkdir()
    age(future, -3600)  # an hour ahead: the clock was moved back
    held = sandbox.cfg / ".storage-write.lock"
    held.mkdir()  # fresh: a writer is at work, never to be touched

    code, data = doctor(sandbox)  # the sandbox PATH has the real (fake) claude, no shim

    assert code == 1
    assert data["healthy"] is False
    problems = [f for f in data["findings"] if f["level"] != "ok"]
    assert {f["check"] for f in problems} == {"shim", "login", "file mode", "locks"}
    assert all(f["fix"] for f in problems)
    assert "claude-wrap install" in by_check(data, "shim")[0]["fix"]
    assert by_check(data, "login")[0]["level"] == "warn"  # the shim or refresh repairs it
    assert "chmod 600" in by_check(data, "file mode")[0]["fix"]
    locks = {f["message"].split(":")[0]: f for f in by_check(data, "locks")}
    assert "untouched for" in by_check(data, "locks")[0]["message"]
    assert any("in the future" in f["message"] for f in locks.values())
    assert sum(f["level"] == "fail" for f in locks.values()) == 2

    code, data = doctor(sandbox, "--fix")

    assert not stale.exists()
    assert not future.exists()
    assert held.exists()
    assert (sandbox.creds.stat().st_mode & 0o777) == 0o600
    assert code == 1  # the shim is still not on PATH: --fix does not edit shell rc files
    assert {f["check"] for f in data["findings"] if f["level"] != "ok"} == {"shim", "login"}


def test_fix_leaves_a_lock_alone_while_a_refresh_holds_our_flock(sandbox: Sandbox) -> None:
    sandbox.write(login_doc())
    stale = sandbox.cfg / ".oauth_refresh.lock"
    stale.mkdir()
    age(stale, 90)
    fd = os.open(sandbox.cfg, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        _, data = doctor(sandbox, "--fix", env=sandbox.shim_env())
    finally:
        os.close(fd)
    assert stale.exists()
    message = by_check(data, "locks")[0]["message"]
    assert "a claude-wrap refresh is running" in message


def test_fix_leaves_every_lock_that_the_refresh_respects(sandbox: Sandbox) -> None:
    """doctor judges locks by lock.py's rules: 25 s without a heartbeat is within 2.1.332's 60 s
    stale time, and 30 s ahead is within the clock-change margin, so --fix keeps both."""
    sandbox.write(login_doc())
    young = sandbox.cfg / ".oauth_refresh.lock"
    young.mkdir()
    age(young, 25)
    ahead = Path(str(sandbox.cfg) + ".lock")
    ahead.mkdir()
    age(ahead, -30)
    _, data = doctor(sandbox, "--fix")
    assert young.exists() and ahead.exists()
    assert all(f["level"] == "ok" for f in by_check(data, "locks"))
    assert all("held by a running refresh" in f["message"] for f in by_check(data, "locks"))


def test_recursion_risks_are_reported(sandbox: Sandbox) -> None:
    sandbox.write(login_doc())
    env = sandbox.shim_env(CLAUDE_WRAP_REAL_CLAUDE=str(sandbox.shim), CLAUDE_WRAP_ACTIVE="1")
    code, data = doctor(sandbox, env=env)
    assert code == 1
    real = by_check(data, "real claude")[0]
    assert real["level"] == "fail"
    assert "is a claude-wrap shim" in real["message"]
    recursion = by_check(data, "recursion")[0]
    assert "CLAUDE_WRAP_ACTIVE=1" in recursion["message"]
    assert recursion["fix"]


def running_fake(sandbox: Sandbox, **env: str) -> tuple[subprocess.Popen[bytes], Any]:
    """doctor's JSON while a fake claude runs with `env` added to the sandbox's."""
    full = {**sandbox.env, **env, "FAKE_CLAUDE_SLEEP": "60"}
    argv = [str(sandbox.fake), "--print", "hi"]
    proc = subprocess.Popen(argv, env=full, stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while not sandbox.runs() and time.monotonic() < deadline:
            time.sleep(0.05)  # the fake writes its record line, then sleeps
        _, data = doctor(sandbox)
    finally:
        proc.kill()
        proc.wait()
    return proc, data


def row_of(data: Any, pid: int) -> dict[str, Any]:
    rows = [r for r in by_check(data, "processes")[0]["processes"] if r["pid"] == pid]
    assert len(rows) == 1, by_check(data, "processes")
    row: dict[str, Any] = rows[0]
    return row


def test_running_claude_processes_are_listed_with_their_config_dir(sandbox: Sandbox) -> None:
    other = sandbox.root / "other-config"
    proc, data = running_fake(sandbox, CLAUDE_CONFIG_DIR=str(other))
    assert row_of(data, proc.pid) == {
        "pid": proc.pid,
        "config_dir": str(other),
        "credentials": str(other / ".credentials.json"),
    }


def test_a_processs_folder_is_the_one_claude_code_reads(sandbox: Sandbox) -> None:
    """By settings.py's rules, not a copy of them: the folder NFC-normalised as Claude Code does,
    and the credentials file where CLAUDE_SECURESTORAGE_CONFIG_DIR puts it."""
    import unicodedata

    nfc = str(sandbox.root / "caf\u00e9")
    nfd = unicodedata.normalize("NFD", nfc)
    assert nfd != nfc
    secure = sandbox.root / "secure"
    proc, data = running_fake(
        sandbox, CLAUDE_CONFIG_DIR=nfd, CLAUDE_SECURESTORAGE_CONFIG_DIR=str(secure)
    )
    row = row_of(data, proc.pid)
    assert row["config_dir"] == nfc
    assert row["credentials"] == str(secure / ".credentials.json")
    message = by_check(data, "processes")[0]["message"]
    assert f"{proc.pid} ({nfc}, its login in {secure / '.credentials.json'})" in message


def test_human_output_gives_each_fix_on_its_own_line(sandbox: Sandbox) -> None:
    result = sandbox.wrap("doctor")
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    fails = [i for i, line in enumerate(lines) if line.startswith(("FAIL", "WARN"))]
    assert fails
    for i in fails:
        assert lines[i + 1].lstrip().startswith("fix: ")
    assert lines[-1] == "problems found: see the fixes above"


def test_an_alias_in_the_shell_rc_counts_as_set_up(sandbox: Sandbox) -> None:
    sandbox.write(login_doc())
    (sandbox.home / ".zshrc").write_text("export EDITOR=vi\nalias claude='claude-wrap run --'\n")
    code, data = doctor(sandbox)
    shim = by_check(data, "shim")[0]
    assert shim["level"] == "ok"
    assert shim["rc"] == str(sandbox.home / ".zshrc")
    assert code == 0, json.dumps(data, indent=2)


def test_fix_keeps_a_lock_younger_than_60_s_and_removes_an_older_one(sandbox: Sandbox) -> None:
    """The refresh lock by lock.py's 60 s (2.1.332's stale time), not a shorter rule of doctor's
    own: 50 s without a heartbeat is a live holder to 2.1.332, 70 s is not."""
    sandbox.write(login_doc())
    young = sandbox.cfg / ".oauth_refresh.lock"
    young.mkdir()
    age(young, 50)
    old = Path(str(sandbox.cfg) + ".lock")
    old.mkdir()
    age(old, 70)
    _, data = doctor(sandbox, "--fix")
    assert young.is_dir()
    assert not old.exists()
    found = {f["message"].split(" ")[0].rstrip(":"): f for f in by_check(data, "locks")}
    assert found[str(young)]["level"] == "ok"
    assert "held by a running refresh (50 s old)" in found[str(young)]["message"]
    assert "removed (--fix)" in found[str(old)]["message"]


def test_fix_removes_a_young_lock_whose_owner_record_proves_its_holder_gone(
    sandbox: Sandbox,
) -> None:
    """2.1.332 takes such a lock over at once (its owner record), and so does lock.py: doctor
    says so, and --fix removes the lock, the legacy lock and the record."""
    from tests.process.test_lock import held_by, lock_dirs, owner_record

    sandbox.write(login_doc())
    dead = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    held_by(sandbox, age_s=5)
    owner_record(sandbox, dead.pid)
    dead.kill()
    dead.wait()
    code, data = doctor(sandbox, env=sandbox.shim_env())
    assert code == 1
    refresh = by_check(data, "locks")[0]
    assert refresh["level"] == "fail"
    assert "owner record names a Claude Code process that is gone" in refresh["message"]
    _, data = doctor(sandbox, "--fix", env=sandbox.shim_env())
    assert not any(p.exists() for p in lock_dirs(sandbox))
    assert not (sandbox.cfg / ".oauth_refresh.lock.owner").exists()
    assert "removed (--fix)" in by_check(data, "locks")[0]["message"]


def test_fix_keeps_a_young_lock_whose_recorded_holder_lives(sandbox: Sandbox) -> None:
    from tests.process.test_lock import held_by, lock_dirs, owner_record

    sandbox.write(login_doc())
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        held_by(sandbox, age_s=25)
        owner_record(sandbox, live.pid)
        _, data = doctor(sandbox, "--fix")
    finally:
        live.kill()
        live.wait()
    assert all(p.is_dir() for p in lock_dirs(sandbox))
    assert (sandbox.cfg / ".oauth_refresh.lock.owner").exists()
    assert all(f["level"] == "ok" for f in by_check(data, "locks"))


def test_fix_removes_the_folders_a_kill_left_while_a_lock_was_taken(sandbox: Sandbox) -> None:
    """lock.py makes a lock under a name of its own, `<lock>.cw-<pid>-<hex>`, and renames it
    into place; a kill in between leaves that folder. It is no lock: doctor says so, and --fix
    removes those of a dead process older than any lock, never one that is young, whose process
    lives, or that holds anything."""
    sandbox.write(login_doc())
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    refresh = f"{sandbox.cfg}/.oauth_refresh.lock"
    legacy = f"{sandbox.cfg}.lock"
    removable = [
        Path(f"{refresh}.cw-{gone.pid}-0a1b2c3d"),
        Path(f"{legacy}.cw-{gone.pid}-9f8e7d6c"),
    ]
    young = Path(f"{refresh}.cw-{gone.pid}-11112222")
    alive = Path(f"{refresh}.cw-{os.getpid()}-33334444")
    full = Path(f"{refresh}.cw-{gone.pid}-55556666")
    for folder in [*removable, young, alive, full]:
        folder.mkdir()
    (full / "something").write_text("kept")
    for folder in [*removable, alive, full]:
        age(folder, 120)

    code, data = doctor(sandbox)
    assert code != 0
    warned = [f for f in by_check(data, "locks") if f["level"] == "warn"]
    assert len(warned) == 2, warned  # one line per lock: the refresh lock's four, the legacy's one
    assert "they hold no lock" in warned[0]["message"]
    assert all(p.is_dir() for p in [*removable, young, alive, full])  # without --fix, nothing goes

    _, data = doctor(sandbox, "--fix")
    assert not any(p.exists() for p in removable)
    assert young.is_dir() and alive.is_dir() and full.is_dir()
    fixed = [f["message"] for f in by_check(data, "locks") if "leftover" in f["message"]]
    assert any("removed 1 leftover folder(s)" in m and "kept 3" in m for m in fixed), fixed
