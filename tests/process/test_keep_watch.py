"""`claude-wrap keep --watch` (issue 14): the keeper as a long-running process that repairs each
change to the credentials file, locally, at once, and refreshes ahead of expiry; and the user
service files that run it. Real processes: the watcher as a subprocess, a writer stripping the
file the hostile way, the token server on loopback."""

from __future__ import annotations

import json
import plistlib
import shutil
import signal
import subprocess
import sys
import time
from typing import TYPE_CHECKING, Any

import pytest

from claude_wrap_testing.tokenserver import Reply
from tests.conftest import ACCESS, REFRESH, REPO, SCOPES, Sandbox, login_doc
from tests.process.test_keep import exec_start, keeper_env, write_login
from tests.process.test_repair import remembered, strip, strip_by_rename, wait_for, whole

if TYPE_CHECKING:
    from collections.abc import Iterator

    from claude_wrap_testing.tokenserver import TokenServer

pytestmark = pytest.mark.timeout(90)


@pytest.fixture
def watcher(sandbox: Sandbox) -> Iterator[Any]:
    procs: list[subprocess.Popen[str]] = []

    def start(**extra: str) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            [sys.executable, "-m", "claude_wrap", "keep", "--watch"],
            env={**sandbox.env, **extra}, cwd=REPO, text=True,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )
        assert proc.stderr is not None
        # Its first line says it watches: from then on a change is seen.
        assert "keep --watch: watching 1 credentials file(s)" in proc.stderr.readline()
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.parametrize(("how", "kind"), [("in_place", "auto"), ("rename", "auto"),
                                           ("in_place", "poll")])
def test_the_watching_keeper_makes_a_stripped_file_whole_with_no_token_request(
    sandbox: Sandbox, token_server: TokenServer, watcher: Any, how: str, kind: str
) -> None:
    remembered(sandbox, login_doc())
    proc = watcher(CLAUDE_WRAP_NOTIFY=kind)
    delays = []
    for _ in range(3):
        started = time.monotonic()
        (strip if how == "in_place" else strip_by_rename)(sandbox)
        wait_for(lambda: whole(sandbox), "the keeper's repair")
        delays.append((time.monotonic() - started) * 1000)
    print(f"keep --watch ({how}, {kind}): strip -> whole in "
          + ", ".join(f"{d:.1f}" for d in delays) + " ms")
    oauth = sandbox.oauth()
    assert (oauth["accessToken"], oauth["refreshToken"], oauth["scopes"]) == (
        ACCESS, REFRESH, SCOPES
    )
    assert oauth["subscriptionType"] == "max"
    assert token_server.requests == []
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert out.count("repaired without a refresh: restored scopes") == 3


def test_the_watching_keeper_refreshes_ahead_of_expiry_and_sleeps_until_then(
    sandbox: Sandbox, token_server: TokenServer, watcher: Any
) -> None:
    # Due 2 s from now (the window is 8 h - 2 s long): it wakes for it, refreshes once.
    sandbox.write(login_doc(expires_in_s=8 * 3600))
    proc = watcher(CLAUDE_WRAP_REFRESH_WINDOW=str(8 * 3600 - 2))
    assert token_server.requests == []  # not due yet: nothing spent at start
    wait_for(lambda: sandbox.oauth()["accessToken"] != ACCESS, "the refresh ahead of expiry")
    assert sandbox.oauth()["accessToken"] == token_server.issued[0]["access_token"]
    time.sleep(1)  # a keeper that looped would refresh again here
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert len(token_server.requests) == 1  # and then it slept: no refresh loop
    assert "refreshed" in out


def test_the_watching_keeper_costs_no_cpu_while_idle(sandbox: Sandbox, watcher: Any) -> None:
    sandbox.write(login_doc())
    proc = watcher()
    time.sleep(0.5)  # past its start
    before = _status(proc.pid)
    time.sleep(2)
    after = _status(proc.pid)
    # Blocked in the kernel: it never woke in 2 s (a poll every 0.5 s would have, 4 times),
    # and spent not a clock tick of CPU.
    assert after["voluntary_ctxt_switches"] == before["voluntary_ctxt_switches"], (before, after)
    assert _cpu_ticks(proc.pid) - before["ticks"] <= 1
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=30)


def _status(pid: int) -> dict[str, int]:
    out = {"ticks": _cpu_ticks(pid)}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key == "voluntary_ctxt_switches":
                out[key] = int(value)
    return out


def _cpu_ticks(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def test_doctor_sees_whether_the_watching_keeper_runs(sandbox: Sandbox, watcher: Any) -> None:
    env = keeper_env(sandbox)
    assert sandbox.wrap("install", "--keeper", "--manager", "systemd", env=env).returncode == 0

    def keeper_finding() -> dict[str, Any]:
        report = json.loads(sandbox.wrap("doctor", "--json", env=env).stdout)
        (found,) = [f for f in report["findings"] if f["check"] == "keeper"]
        return dict(found)

    assert keeper_finding()["running"] is None
    sandbox.write(login_doc())
    proc = watcher()
    found = keeper_finding()
    assert (found["mode"], found["running"]) == ("watch", proc.pid)
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=30)
    assert keeper_finding()["running"] is None


def test_install_keeper_sets_up_the_watching_service_by_default(sandbox: Sandbox) -> None:
    env = keeper_env(sandbox)
    units = sandbox.home / ".config" / "systemd" / "user"
    timer = sandbox.wrap("install", "--keeper=timer", "--manager", "systemd", env=env)
    assert timer.returncode == 0, timer.stderr
    result = sandbox.wrap("install", "--keeper", "--manager", "systemd", env=env)
    assert result.returncode == 0, result.stderr
    service = units / "claude-wrap-keeper-watch.service"
    assert f"installed: {service}" in result.stdout
    assert "systemctl --user enable --now claude-wrap-keeper-watch.service" in result.stdout
    # One keeper at a time: the timer's files went.
    assert not (units / "claude-wrap-keeper.timer").exists()
    text = service.read_text()
    assert "Type=simple" in text and "Restart=on-failure" in text
    assert "WantedBy=default.target" in text
    assert exec_start(text)[1:] == ["-m", "claude_wrap", "keep", "--all", "--watch"]
    analyze = shutil.which("systemd-analyze")
    if analyze:
        check = subprocess.run([analyze, "verify", str(service)], capture_output=True, text=True)
        assert "claude-wrap-keeper" not in check.stderr, check.stderr
    removed = sandbox.wrap("uninstall", "--keeper", "--manager", "systemd", env=env)
    assert removed.stdout.count("removed: ") == 1
    assert not list(units.glob("claude-wrap*"))


def test_the_launchd_watching_agent_is_kept_alive(sandbox: Sandbox) -> None:
    result = sandbox.wrap("install", "--keeper", "--manager", "launchd")
    assert result.returncode == 0, result.stderr
    plist = sandbox.home / "Library/LaunchAgents/io.github.claude-wrap.keeper-watch.plist"
    job = plistlib.loads(plist.read_bytes())
    assert job["KeepAlive"] is True and "StartInterval" not in job
    assert job["ProgramArguments"][1:] == ["-m", "claude_wrap", "keep", "--all", "--watch"]


def test_the_watching_keeper_of_all_folders_keeps_a_login_made_after_it_started(
    sandbox: Sandbox, token_server: TokenServer
) -> None:
    """`keep --watch --all` as the installed service runs it, for days: a folder made since
    (`CLAUDE_CONFIG_DIR=~/.claude-work claude /login`) is found on the next look (every
    CLAUDE_WRAP_RESCAN s), watched, and kept, with no restart."""
    sandbox.write(login_doc())
    proc = subprocess.Popen(
        [sys.executable, "-m", "claude_wrap", "keep", "--watch", "--all"],
        env={**sandbox.env, "CLAUDE_WRAP_RESCAN": "0.2"}, cwd=REPO, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    try:
        assert proc.stderr is not None
        assert "watching 1 credentials file(s)" in proc.stderr.readline()
        work = sandbox.home / ".claude-work"
        write_login(work, login_doc(expires_in_s=-60, refresh="sk-ant-ort01-work-refresh-CCCC"))
        assert "watching 2 credentials file(s)" in proc.stderr.readline()
        assert proc.stdout is not None
        assert proc.stdout.readline().startswith(f"{work}: refreshed")  # then it waits again
        assert token_server.refresh_tokens_seen == ["sk-ant-ort01-work-refresh-CCCC"]
        work_oauth = json.loads((work / ".credentials.json").read_text())["claudeAiOauth"]
        assert work_oauth["accessToken"] == token_server.issued[0]["access_token"]
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert len(token_server.requests) == 1  # ~/.claude was fine: nothing spent on it


def test_a_stop_during_the_watching_keepers_refresh_is_clean_and_keeps_the_new_login(
    sandbox: Sandbox, token_server: TokenServer
) -> None:
    """`systemctl stop` while the keeper's refresh is at the server: the stop waits for the
    answer to be stored (refresher._signals_held), then the keeper ends as a stop should, exit 0,
    not 143 (which systemd would show as a failed unit)."""
    token_server.default = lambda server, request: Reply(
        200, {"access_token": "sk-ant-oat01-kept-AAAA", "refresh_token": "sk-ant-ort01-kept-BBBB",
              "expires_in": 28800, "scope": " ".join(SCOPES)}, delay=1.0,
    )
    sandbox.write(login_doc(expires_in_s=-60))
    proc = subprocess.Popen(
        [sys.executable, "-m", "claude_wrap", "keep", "--watch"],
        env=sandbox.env, cwd=REPO, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    wait_for(lambda: token_server.requests, "the keeper's request")
    time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    assert sandbox.oauth()["refreshToken"] == "sk-ant-ort01-kept-BBBB"
