"""Trouble coming, where users look: the login's end (refreshTokenExpiresAt) in `status`,
`doctor`, `status --short` and one stderr line of the shim; the keeper's notifications; and
`claude-wrap log`. Real processes throughout: the wrapper, the shim, the token server on
127.0.0.1, and a fake `notify-send` on PATH that records its calls."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from claude_wrap_testing.tokenserver import TokenServer, invalid_grant
from tests.conftest import REFRESH, REPO, WRAP, Sandbox, login_doc, now_ms

DAY_MS = 86_400_000


def ending(in_ms: int | None, **kw: Any) -> dict[str, Any]:
    doc = login_doc(**kw)
    if in_ms is not None:
        doc["claudeAiOauth"]["refreshTokenExpiresAt"] = now_ms() + in_ms
    return doc


# status, doctor ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("in_ms", "line", "soon"),
    [
        (2 * DAY_MS + 120_000, "login ends in 2 days, ", True),
        (20 * DAY_MS, None, False),
        (-3_600_000, "login ended ", True),
        (None, None, False),
    ],
    ids=["2-days", "20-days", "past", "absent"],
)
def test_status_shows_the_logins_end_within_the_window(
    sandbox: Sandbox, in_ms: int | None, line: str | None, soon: bool
) -> None:
    sandbox.write(ending(in_ms))
    text = sandbox.wrap("status")
    assert text.returncode == 0, text.stderr
    ends = [x for x in text.stdout.splitlines() if x.startswith("login end")]
    if line is None:
        assert ends == []
    else:
        (shown,) = ends
        assert shown.startswith(line)
        assert "run `claude /login`" in shown
    data = json.loads(sandbox.wrap("status", "--json").stdout)
    assert data["login_ends_soon"] is soon
    if in_ms is None:
        assert data["login_ends_at"] is None
        assert data["login_ends"] is None
    else:
        assert data["login_ends_at"] == sandbox.oauth()["refreshTokenExpiresAt"]
    doctor = sandbox.wrap("doctor", "--json")
    checks = [f["check"] for f in json.loads(doctor.stdout)["findings"]]
    assert ("login end" in checks) is soon


def test_the_window_is_a_setting(sandbox: Sandbox) -> None:
    sandbox.write(ending(20 * DAY_MS + 120_000))
    wide = sandbox.wrap("status", env={"CLAUDE_WRAP_LOGIN_END_WINDOW": str(30 * 86400)})
    assert "login ends in 20 days" in wide.stdout
    bad = sandbox.wrap("status", env={"CLAUDE_WRAP_LOGIN_END_WINDOW": "soon"})
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines() == [
        "claude-wrap: CLAUDE_WRAP_LOGIN_END_WINDOW='soon' is not a number of seconds; "
        "unset it or fix its value"
    ]


# status --short ----------------------------------------------------------------------------


# The logins are made when each test runs, not at collection: the whole suite takes longer than
# the two minutes of slack each end has.
@pytest.mark.parametrize(
    ("make", "word"),
    [
        (lambda: ending(2 * DAY_MS + 120_000), "2d"),
        (lambda: ending(5 * 3_600_000 + 120_000), "5h"),
        (lambda: ending(20 * DAY_MS), "ok"),
        (lambda: ending(None), "ok"),
        (lambda: ending(-3_600_000, expires_in_s=-60), "end"),
        (lambda: ending(None, expires_in_s=-60), "exp"),
        (lambda: ending(None, access="", refresh=""), "login"),
    ],
    ids=["2-days", "5-hours", "20-days", "absent", "past", "expired", "logged-out"],
)
def test_status_short(
    sandbox: Sandbox, make: Callable[[], dict[str, Any]], word: str
) -> None:
    sandbox.write(make())
    for _ in range(2):  # the first judges the file, the second may answer from the cache
        result = sandbox.wrap("status", "--short")
        assert (result.returncode, result.stdout, result.stderr) == (0, f"{word}\n", "")


def test_status_short_on_a_healthy_login_parses_nothing(sandbox: Sandbox) -> None:
    """Once the cache knows the login, a prompt's call imports neither json nor the refresher."""
    sandbox.write(ending(2 * DAY_MS + 120_000))
    assert sandbox.wrap("status", "--short").stdout == "2d\n"  # judged, remembered
    run = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "claude_wrap", "status", "--short"],
        env=sandbox.env, cwd=REPO, capture_output=True, text=True, timeout=60, check=False,
    )
    assert run.stdout == "2d\n"
    imported = {line.split("|")[-1].strip() for line in run.stderr.splitlines() if "|" in line}
    assert "claude_wrap.storage.fastpath" in imported
    heavy_modules = (
        "json", "claude_wrap.refresh.refresher", "claude_wrap.judging.login", "httpx", "argparse"
    )
    for heavy in heavy_modules:
        assert heavy not in imported, heavy


# the shim's line ---------------------------------------------------------------------------


def test_shim_says_once_an_hour_on_stderr_when_the_login_ends_within_a_day(
    sandbox: Sandbox,
) -> None:
    sandbox.write(ending(5 * 3_600_000))
    first = sandbox.claude("--print", input=b"hello")
    second = sandbox.claude("--print", input=b"hello")
    assert first.returncode == second.returncode == 0
    assert first.stdout.startswith(b"fake answer: ")
    assert first.stdout.replace(b"\n", b"")[:13] == second.stdout.replace(b"\n", b"")[:13]
    lines = first.stderr.decode().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("claude-wrap: warning: this login ends in 4h")
    assert "run `claude /login` before then" in lines[0]
    assert second.stderr == b""  # within the hour: said already
    stamp = sandbox.state / "claude-wrap" / "login-end-notice"
    hour_ago = time.time() - 3700
    os.utime(stamp, (hour_ago, hour_ago))  # an hour passed
    third = sandbox.claude("--print", input=b"hello")
    assert third.stderr.decode().startswith("claude-wrap: warning: this login ends in")


def test_shim_is_silent_when_the_end_is_far_or_unknown(sandbox: Sandbox) -> None:
    for doc in (ending(2 * DAY_MS), ending(None)):
        sandbox.write(doc)
        for _ in range(2):
            result = sandbox.claude("--print", input=b"hello")
            assert (result.returncode, result.stderr) == (0, b"")


# the keeper's notifications ----------------------------------------------------------------


def fake_notify_send(sandbox: Sandbox) -> Path:
    calls = sandbox.root / "notify-calls.jsonl"
    tool = sandbox.fakebin / "notify-send"
    tool.write_text(
        f"#!{sys.executable}\nimport json, sys\n"
        f"with open({str(calls)!r}, 'a') as f:\n"
        "    f.write(json.dumps(sys.argv[1:]) + '\\n')\n"
    )
    tool.chmod(0o755)
    return calls


def calls_of(calls: Path) -> list[list[str]]:
    if not calls.exists():
        return []
    return [json.loads(line) for line in calls.read_text().splitlines()]


DESKTOP = {"DISPLAY": ":0"}


def test_keeper_tells_once_a_day_within_the_window(sandbox: Sandbox) -> None:
    calls = fake_notify_send(sandbox)
    sandbox.write(ending(2 * DAY_MS + 120_000))
    for _ in range(3):
        result = sandbox.wrap("keep", env=DESKTOP)
        assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
    (call,) = calls_of(calls)
    assert call[:4] == ["--app-name=claude-wrap", "-u", "normal", "claude-wrap"]
    assert call[4].startswith(f"{sandbox.cfg}: login ends in 2 days, ")
    # The next day, without waiting for it: the remembered state says when it was last told.
    state_file = sandbox.state / "claude-wrap" / "notified.json"
    assert state_file.stat().st_mode & 0o777 == 0o600
    state = json.loads(state_file.read_text())
    assert "sk-ant" not in state_file.read_text()
    state[str(sandbox.cfg)]["day"] = "2000-01-01"
    state_file.write_text(json.dumps(state))
    sandbox.wrap("keep", env=DESKTOP)
    sandbox.wrap("keep", env=DESKTOP)
    assert len(calls_of(calls)) == 2


def test_keeper_says_nothing_when_the_end_is_far_or_unknown(sandbox: Sandbox) -> None:
    calls = fake_notify_send(sandbox)
    for doc in (ending(20 * DAY_MS), ending(None)):
        sandbox.write(doc)
        assert sandbox.wrap("keep", env=DESKTOP).returncode == 0
    assert calls_of(calls) == []


def test_a_new_login_is_told_afresh(sandbox: Sandbox) -> None:
    calls = fake_notify_send(sandbox)
    sandbox.write(ending(2 * DAY_MS + 120_000))
    sandbox.wrap("keep", env=DESKTOP)
    sandbox.write(ending(DAY_MS + 3_600_000))  # another login (another end), same day
    sandbox.wrap("keep", env=DESKTOP)
    sandbox.wrap("keep", env=DESKTOP)
    assert len(calls_of(calls)) == 2


def test_a_dead_login_is_told_once(sandbox: Sandbox, token_server: TokenServer) -> None:
    calls = fake_notify_send(sandbox)
    sandbox.write(ending(10 * DAY_MS, expires_in_s=-60))
    token_server.script(invalid_grant(), invalid_grant())
    for _ in range(2):
        result = sandbox.wrap("keep", env=DESKTOP)
        assert result.returncode == 4
    (call,) = calls_of(calls)
    assert call[2] == "critical"
    assert "is dead" in call[4]
    assert "claude /login" in call[4]
    short = sandbox.wrap("status", "--short")
    assert short.stdout == "login\n"  # not "exp": the keeper knows no refresh will help
    # /login gives a new login: it works, the memory starts afresh, and its death is told again.
    sandbox.write(ending(10 * DAY_MS, refresh="sk-ant-ort01-new-login-DDDDDDDDDD"))
    assert sandbox.wrap("keep", env=DESKTOP).returncode == 0
    sandbox.write(ending(10 * DAY_MS, expires_in_s=-60, refresh="sk-ant-ort01-new-login-DDDD"))
    token_server.script(invalid_grant())
    assert sandbox.wrap("keep", env=DESKTOP).returncode == 4
    assert len(calls_of(calls)) == 2


def test_without_a_desktop_the_journal_is_told(sandbox: Sandbox) -> None:
    calls = fake_notify_send(sandbox)
    sandbox.write(ending(2 * DAY_MS + 120_000))
    # Under systemd (JOURNAL_STREAM set) stderr is the journal, under the keeper's unit.
    result = sandbox.wrap("keep", env={"JOURNAL_STREAM": "8:12345"})
    assert result.returncode == 0
    assert result.stderr.startswith(f"claude-wrap: {sandbox.cfg}: login ends in 2 days, ")
    assert calls_of(calls) == []


# claude-wrap log ---------------------------------------------------------------------------


def test_log_shows_refresh_repair_and_invalid_grant(
    sandbox: Sandbox, token_server: TokenServer
) -> None:
    sandbox.write(login_doc(expires_in_s=-60))
    assert sandbox.wrap("keep").returncode == 0  # a refresh, by the keeper
    sandbox.write(login_doc(scopes=None))
    # A repair (scopes lost, the token good): local, no token request (issue 14), by `refresh`.
    assert sandbox.wrap("refresh").returncode == 0
    assert len(token_server.requests) == 1
    sandbox.write(login_doc(expires_in_s=-60))
    token_server.script(invalid_grant())
    dead = sandbox.claude("--print", input=b"hi")  # through the shim
    assert b"rejected the stored refresh token" in dead.stderr
    sent = [(r.body or {}).get("refresh_token") for r in token_server.requests[1:]]
    assert sent == [REFRESH]  # the dead token went out once, not again by the watcher
    # A kind this reader does not know (another engineer's new event) is shown, not dropped.
    with sandbox.log.open("a") as f:
        f.write("2026-12-02 10:00:00.000 4242 EVENT event\tguest-pull\tguest\t/x/.claude\tpulled\n")

    result = sandbox.wrap("log")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    kinds = [line.split("  ")[2].split(":")[0] for line in lines]
    assert kinds[:3] == ["refreshed", "repaired", "FAILED"], lines
    assert "(pid " in lines[0] and lines[0].endswith(", keeper)")
    assert lines[0].split("  ")[1] == "~/.claude"
    assert lines[1].endswith(", refresh)")
    assert "invalid_grant" in lines[2] and lines[2].endswith(", shim)")
    assert lines[-1].endswith("guest-pull: pulled  (pid 4242, guest)")
    assert "sk-ant" not in result.stdout
    last = sandbox.wrap("log", "-n", "1")
    assert last.stdout.splitlines() == lines[-1:]


def test_log_follows_across_rotation_and_ends_quietly_on_ctrl_c(sandbox: Sandbox) -> None:
    sandbox.log.write_text("")
    follower = subprocess.Popen(
        [*WRAP, "log", "-f"], env=sandbox.env, cwd=REPO, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )
    try:
        assert follower.stdout is not None
        time.sleep(0.5)  # let it open the file (a line written before would be "old")
        with sandbox.log.open("a") as f:
            f.write("2026-12-02 10:00:00.000 1 EVENT event\trefresh\tkeeper\t/a\tone\n")
        assert "refreshed: one" in follower.stdout.readline()
        sandbox.log.rename(sandbox.log.with_name("claude-wrap.2026-12-02_10-00-00_000000.log"))
        sandbox.log.write_text("2026-12-02 10:00:01.000 2 EVENT event\tadopt\tshim\t/a\ttwo\n")
        assert "adopted: two" in follower.stdout.readline()
        follower.send_signal(signal.SIGINT)
        assert follower.wait(timeout=30) == 130
        assert follower.stderr is not None
        assert follower.stderr.read() == ""
    finally:
        if follower.poll() is None:
            follower.kill()
            follower.wait()


# The login's time limit reached (docs/protocol.md section 10) -------------------------------------


def time_limit_reached(kind: str) -> dict[str, Any]:
    if kind == "refreshTokenExpiresAt":  # passed, with the access token expired
        return ending(-3_600_000, expires_in_s=-60)
    # As Claude Code 2.1.332+ leaves it after invalid_grant "Refresh token expired".
    doc = login_doc(access="", refresh="")
    doc["claudeAiOauth"].update(expiresAt=0, loginEnded="time_limit")
    return doc


@pytest.mark.parametrize("kind", ["refreshTokenExpiresAt", "loginEnded"])
def test_status_says_in_one_line_that_the_login_reached_its_time_limit(
    sandbox: Sandbox, kind: str
) -> None:
    sandbox.write(time_limit_reached(kind))
    text = sandbox.wrap("status")
    assert text.returncode != 0
    first = text.stdout.splitlines()[0]
    assert first.startswith("login: logged_out (")
    assert "reached its time limit" in first and "only `claude /login`" in first, first


@pytest.mark.parametrize("kind", ["refreshTokenExpiresAt", "loginEnded"])
def test_a_login_past_its_time_limit_gets_no_token_request(
    sandbox: Sandbox, token_server: TokenServer, kind: str
) -> None:
    sandbox.write(time_limit_reached(kind))
    before = sandbox.creds.read_bytes()
    shim = sandbox.claude("-p", "hi")  # the pre-flight: nothing to refresh, claude says why
    assert token_server.requests == [], shim.stderr
    refresh = sandbox.wrap("refresh")
    assert refresh.returncode != 0
    assert "reached its time limit" in refresh.stderr
    assert token_server.requests == []
    assert sandbox.creds.read_bytes() == before
