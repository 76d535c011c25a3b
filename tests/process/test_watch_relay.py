"""Headless runs through the installed shim: the real wrapper relaying a scripted fake claude,
a real token server on loopback, real files. What a pipeline or an editor would see."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
import pytest

from claude_wrap_testing.tokenserver import TokenServer, invalid_grant
from tests.conftest import Sandbox, login_doc

NLI = "Not logged in · Please run /login"
E401 = "Failed to authenticate. API Error: 401 OAuth token has expired."


# How editors and the Agent SDK run it (docs/protocol.md section 8).
EDITOR = ("-p", "--input-format", "stream-json", "--output-format", "stream-json", "--verbose")


def lines(out: bytes) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.splitlines()]


def wait_for(predicate: Callable[..., object], what: str, limit: float = 20) -> None:
    """Poll until the precondition holds (a bound on waiting, not an assertion on timing)."""
    deadline = time.monotonic() + limit
    while not predicate():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.02)


def start(
    sandbox: Sandbox,
    *args: str,
    env: dict[str, str],
    stdin: int = subprocess.DEVNULL,
    stderr: int = subprocess.PIPE,
) -> subprocess.Popen[bytes]:
    """`claude ARGS` through the shim, left running: the test talks to it and signals it."""
    return subprocess.Popen(
        [str(sandbox.shim), *args],
        env=env,
        cwd=sandbox.root,
        stdin=stdin,
        stdout=subprocess.PIPE,
        stderr=stderr,
    )


@pytest.fixture
def logged_in(sandbox: Sandbox) -> Sandbox:
    sandbox.write(login_doc())
    return sandbox


def test_done_criterion_100000_bytes_of_stdin_failed_once_prints_only_the_retry(
    logged_in: Sandbox, token_server: TokenServer
) -> None:
    env = logged_in.shim_env(FAKE_CLAUDE_FAIL_FIRST="1")
    result = subprocess.run(
        ["bash", "-c", "printf 'x%.0s' {1..100000} | claude --print"],
        env=env,
        capture_output=True,
        cwd=logged_in.root,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    runs = logged_in.runs()
    assert len(runs) == 2
    # Both runs got the whole of stdin: the retry had it replayed.
    assert {r["stdin_len"] for r in runs} == {100000}
    assert runs[0]["stdin_sha"] == runs[1]["stdin_sha"]
    assert result.stdout.decode().startswith("fake answer: ")
    assert NLI not in result.stdout.decode()
    assert result.stderr == b""
    # The token looked fine and was refused: one forced refresh, and the retry used its token.
    assert len(token_server.requests) == 1
    assert runs[1]["access_token"] == token_server.issued[0]["access_token"]
    assert logged_in.oauth()["accessToken"] == token_server.issued[0]["access_token"]


@pytest.mark.parametrize("fmt", ["text", "json", "stream-json"])
def test_each_format_failed_once_shows_only_the_retried_run(
    logged_in: Sandbox, token_server: TokenServer, fmt: str
) -> None:
    args = ["-p", "hi", "--output-format", fmt] + (["--verbose"] if fmt == "stream-json" else [])
    result = logged_in.claude(*args, env=logged_in.shim_env(FAKE_CLAUDE_FAIL_FIRST="1"))
    assert result.returncode == 0, result.stderr
    assert len(logged_in.runs()) == 2
    assert b"Not logged in" not in result.stdout
    if fmt == "json":
        assert [o["is_error"] for o in lines(result.stdout)] == [False]
    if fmt == "stream-json":
        got = lines(result.stdout)
        assert [o["type"] for o in got] == ["system", "assistant", "result"]  # one init only
        assert got[-1]["is_error"] is False
    assert result.stderr == b""


@pytest.mark.parametrize("fmt", ["text", "json", "stream-json"])
def test_a_run_that_fails_twice_is_retried_once_and_its_failure_shown(
    logged_in: Sandbox, token_server: TokenServer, fmt: str
) -> None:
    result = logged_in.claude(
        "-p", "hi", "--output-format", fmt, env=logged_in.shim_env(FAKE_CLAUDE_FAIL_FIRST="5")
    )
    assert result.returncode == 1
    assert len(logged_in.runs()) == 2  # the repaired file, untouched since, refused again: stop
    err = result.stderr.decode().splitlines()
    assert len(err) == 1 and "again after the login was repaired" in err[0], err
    shown = result.stdout.decode()
    if fmt != "text":
        shown = json.dumps(lines(result.stdout), ensure_ascii=False)
    assert shown.count(NLI) == (2 if fmt == "stream-json" else 1)
    if fmt == "stream-json":
        assert [o["type"] for o in lines(result.stdout)] == ["system", "assistant", "result"]


@pytest.mark.parametrize("fmt", ["text", "json", "stream-json"])
@pytest.mark.parametrize("status", ["0", "1"])
def test_quoting_the_phrase_is_not_a_failure(
    logged_in: Sandbox, token_server: TokenServer, fmt: str, status: str
) -> None:
    env = logged_in.shim_env(FAKE_CLAUDE_QUOTE="1", FAKE_CLAUDE_EXIT=status)
    watched = logged_in.claude("-p", "hi", "--output-format", fmt, env=env)
    direct = logged_in.claude(
        "-p", "hi", "--output-format", fmt, env={**env, "CLAUDE_WRAP_WATCH": "0"}
    )
    assert watched.returncode == direct.returncode == int(status)
    assert NLI.encode() in watched.stdout or b"\\u00b7 Please run" in watched.stdout
    assert len(logged_in.runs()) == 2  # one each: no retry
    assert token_server.requests == []
    if fmt == "text":
        assert watched.stdout == direct.stdout


def test_refused_401_forces_one_refresh(logged_in: Sandbox, token_server: TokenServer) -> None:
    env = logged_in.shim_env(FAKE_CLAUDE_FAIL_FIRST="1", FAKE_CLAUDE_FAIL_MESSAGE=E401)
    result = logged_in.claude("-p", "hi", env=env)
    assert result.returncode == 0
    assert len(token_server.requests) == 1
    assert logged_in.runs()[1]["access_token"] == token_server.issued[0]["access_token"]


def test_a_login_another_process_fixed_meanwhile_is_adopted_without_a_refresh(
    logged_in: Sandbox, token_server: TokenServer
) -> None:
    env = logged_in.shim_env(FAKE_CLAUDE_FAIL_FIRST="1", FAKE_CLAUDE_SLEEP="0.5")
    proc = start(logged_in, "-p", "hi", env=env)
    wait_for(logged_in.runs, "the first run")
    logged_in.write(login_doc(access="sk-ant-oat01-written-by-another-process"))
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert token_server.requests == []
    runs = logged_in.runs()
    assert len(runs) == 2
    assert runs[1]["access_token"] == "sk-ant-oat01-written-by-another-process"


def test_scopes_stripped_while_claude_runs_are_repaired_and_retried(
    logged_in: Sandbox, token_server: TokenServer
) -> None:
    env = logged_in.shim_env(FAKE_CLAUDE_SLEEP="0.5")
    proc = start(logged_in, "-p", "hi", env=env)
    wait_for(logged_in.runs, "the first run")
    logged_in.write(login_doc(scopes=None))  # a third-party tool rewrote it without scopes
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert out.startswith(b"fake answer")
    # The access token was good: the scopes are put back locally, nothing spent (issue 14).
    assert token_server.requests == []
    assert "user:inference" in logged_in.oauth()["scopes"]


def strip_scopes_during_runs(sandbox: Sandbox, runs: int) -> threading.Thread:
    """A third-party tool that rewrites the file without scopes while each of the first `runs`
    runs of claude is under way (after it started, before it reads the file: FAKE_CLAUDE_SLEEP),
    keeping the tokens our repair left, as the soak's hostile refresher does (issue 9)."""

    def strip() -> None:
        for n in range(1, runs + 1):
            try:
                wait_for(lambda n=n: len(sandbox.runs()) >= n, f"run {n}", limit=60)
            except AssertionError:
                return  # the shim launched no more (the test says whether that was right)
            doc = sandbox.read()
            del doc["claudeAiOauth"]["scopes"]
            tmp = sandbox.creds.with_name("stripped.tmp")
            tmp.write_text(json.dumps(doc))
            os.replace(tmp, sandbox.creds)

    thread = threading.Thread(target=strip, daemon=True)
    thread.start()
    return thread


def test_a_file_broken_again_during_the_retry_is_repaired_and_retried_again(
    logged_in: Sandbox, token_server: TokenServer
) -> None:
    # The soak (issue 9) saw it: the hostile rewrote the file between our repair and the
    # retried claude reading it, and the retry's "Not logged in" went out as the answer.
    stripper = strip_scopes_during_runs(logged_in, 2)
    proc = start(logged_in, "-p", "hi", env=logged_in.shim_env(FAKE_CLAUDE_SLEEP="1"))
    out, err = proc.communicate(timeout=90)
    stripper.join(5)
    assert proc.returncode == 0, err
    assert out.startswith(b"fake answer") and NLI.encode() not in out
    assert err == b""
    assert len(logged_in.runs()) == 3
    assert token_server.requests == []  # one local repair per rewrite: the token was good
    assert "user:inference" in logged_in.oauth()["scopes"]


def test_a_file_broken_during_every_retry_ends_after_a_bounded_number_of_runs(
    logged_in: Sandbox, token_server: TokenServer
) -> None:
    stripper = strip_scopes_during_runs(logged_in, 10)
    proc = start(logged_in, "-p", "hi", env=logged_in.shim_env(FAKE_CLAUDE_SLEEP="1"))
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 1
    assert out.decode() == NLI + "\n"  # the last run's failure, once
    lines_ = err.decode().splitlines()
    assert len(lines_) == 1 and "another program had changed the credentials file" in lines_[0]
    assert len(logged_in.runs()) == 4
    assert token_server.requests == []  # three local repairs
    assert stripper.is_alive()  # it waits for a fifth run that never comes


def test_a_repair_that_fails_passes_the_failure_through_with_one_line(
    logged_in: Sandbox, token_server: TokenServer
) -> None:
    token_server.script(invalid_grant(), invalid_grant())
    before = logged_in.creds.read_bytes()
    for fmt in ("text", "stream-json"):
        env = logged_in.shim_env(
            FAKE_CLAUDE_FAIL_FIRST="1", FAKE_CLAUDE_COUNTER=str(logged_in.root / fmt)
        )
        watched = logged_in.claude("-p", "hi", "--output-format", fmt, env=env)
        assert watched.returncode == 1
        err = watched.stderr.decode().splitlines()
        assert len(err) == 1 and err[0].startswith("claude-wrap: "), err
        assert "could not repair" in err[0]
        assert "sk-ant-" not in err[0]
        # Exactly what the binary printed: compare with the same failure, unwatched.
        env["FAKE_CLAUDE_COUNTER"] = str(logged_in.root / (fmt + "-direct"))
        direct = logged_in.claude(
            "-p", "hi", "--output-format", fmt, env={**env, "CLAUDE_WRAP_WATCH": "0"}
        )
        if fmt == "text":
            assert watched.stdout == direct.stdout
        else:
            assert [o["type"] for o in lines(watched.stdout)] == ["system", "assistant", "result"]
    assert logged_in.creds.read_bytes() == before  # invalid_grant: never retried, file intact
    # The first invocation's only: the second knows that token died (logfile/deaths.py) and
    # sends nothing (issue 26: a token refused with invalid_grant is never sent again).
    assert len(token_server.requests) == 1


def test_past_the_replay_limit_there_is_no_retry_but_the_login_is_repaired(
    logged_in: Sandbox, token_server: TokenServer
) -> None:
    env = logged_in.shim_env(FAKE_CLAUDE_FAIL_FIRST="1", CLAUDE_WRAP_REPLAY_LIMIT="1000")
    result = logged_in.claude("-p", input=b"y" * 5000, env=env)
    assert result.returncode == 1
    assert result.stdout.decode() == NLI + "\n"
    err = result.stderr.decode().splitlines()
    assert len(err) == 1 and "not retried" in err[0] and "CLAUDE_WRAP_REPLAY_LIMIT" in err[0]
    assert len(logged_in.runs()) == 1
    assert len(token_server.requests) == 1  # the next run will work


def test_output_on_stderr_is_relayed_and_rules_out_a_retry(logged_in: Sandbox) -> None:
    env = logged_in.shim_env(
        FAKE_CLAUDE_STDERR="warning: \xff odd bytes\n", FAKE_CLAUDE_FAIL_FIRST="1"
    )
    result = logged_in.claude("-p", "hi", env=env)
    assert result.stderr.startswith("warning: \xff odd bytes\n".encode())
    assert result.returncode == 1
    assert result.stdout.decode() == NLI + "\n"
    assert len(logged_in.runs()) == 1


def test_watch_off_execs_the_real_binary(logged_in: Sandbox) -> None:
    env = logged_in.shim_env(FAKE_CLAUDE_FAIL_FIRST="1", CLAUDE_WRAP_WATCH="0")
    proc = start(logged_in, "-p", "hi", env=env)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 1 and out.decode() == NLI + "\n"
    assert logged_in.runs()[0]["pid"] == proc.pid  # exec: the same process
    env["CLAUDE_WRAP_WATCH"] = "1"
    proc = start(logged_in, "-p", "hi", env=env)
    proc.communicate(timeout=60)
    assert logged_in.runs()[1]["ppid"] == proc.pid  # watched: our child


@pytest.mark.timeout(60)
def test_text_lines_reach_the_consumer_as_the_child_writes_them(
    logged_in: Sandbox, tmp_path: Path
) -> None:
    """The fake writes line i, then waits for the test to acknowledge it: a wrapper that held
    or buffered a line would deadlock here (and the timeout fails the test)."""
    acks = tmp_path / "acks"
    acks.mkdir()
    env = logged_in.shim_env(FAKE_CLAUDE_LINES="5", FAKE_CLAUDE_ACK_DIR=str(acks))
    proc = start(logged_in, "-p", "hi", env=env)
    assert proc.stdout is not None
    for i in range(5):
        assert proc.stdout.readline().startswith(f"line {i} ".encode())
        (acks / str(i)).touch()
    proc.communicate(timeout=30)
    assert proc.returncode == 0


@pytest.mark.timeout(60)
def test_stream_json_lines_reach_the_consumer_as_the_child_writes_them(
    logged_in: Sandbox, tmp_path: Path
) -> None:
    acks = tmp_path / "acks"
    acks.mkdir()
    env = logged_in.shim_env(FAKE_CLAUDE_LINES="4", FAKE_CLAUDE_ACK_DIR=str(acks))
    proc = start(logged_in, "-p", "hi", "--output-format", "stream-json", "--verbose", env=env)
    assert proc.stdout is not None
    # init is held until the next line shows a real model: it could have been the failure.
    assert json.loads(proc.stdout.readline())["type"] == "system"
    for i in range(4):
        message = json.loads(proc.stdout.readline())["message"]
        assert message["content"][0]["text"] == str(i)
        (acks / str(i)).touch()
    proc.communicate(timeout=30)
    assert proc.returncode == 0


@pytest.mark.timeout(60)
def test_an_editor_session_on_stdin_is_relayed_line_by_line(logged_in: Sandbox) -> None:
    proc = start(logged_in, *EDITOR, env=logged_in.shim_env(), stdin=subprocess.PIPE)
    assert proc.stdin is not None and proc.stdout is not None
    for word in ("one", "two", "three"):
        proc.stdin.write(json.dumps({"type": "user", "text": word}).encode() + b"\n")
        proc.stdin.flush()
        if word == "one":
            assert json.loads(proc.stdout.readline())["type"] == "system"
        text = json.loads(proc.stdout.readline())["message"]["content"][0]["text"]
        assert text.startswith("echo ") and word in text
    proc.stdin.close()
    assert json.loads(proc.stdout.readline())["type"] == "result"
    proc.wait(timeout=30)
    assert proc.returncode == 0


def test_an_editor_session_failed_at_start_is_retried_with_its_stdin_replayed(
    logged_in: Sandbox, token_server: TokenServer
) -> None:
    session = b"".join(json.dumps({"type": "user", "text": w}).encode() + b"\n" for w in "ab")
    result = logged_in.claude(
        *EDITOR,
        input=session,
        env=logged_in.shim_env(FAKE_CLAUDE_FAIL_FIRST="1"),
    )
    assert result.returncode == 0, result.stderr
    got = lines(result.stdout)
    assert [o["type"] for o in got] == ["system", "assistant", "assistant", "result"]
    assert got[2]["message"]["content"][0]["text"] == """echo {"type": "user", "text": "b"}"""


def test_head_closing_the_pipe_ends_quietly_like_the_real_binary(logged_in: Sandbox) -> None:
    script = "claude -p hi | head -1; echo status=${PIPESTATUS[0]}"
    results = []
    for watch in ("1", "0"):
        env = logged_in.shim_env(FAKE_CLAUDE_LINES="20000", CLAUDE_WRAP_WATCH=watch)
        results.append(
            subprocess.run(
                ["bash", "-c", script], env=env, capture_output=True, cwd=logged_in.root, timeout=60
            )
        )
    watched, direct = results
    assert watched.stderr == direct.stderr == b""
    assert watched.stdout.splitlines()[0].startswith(b"line 0 ")
    assert watched.stdout.splitlines()[1:] == direct.stdout.splitlines()[1:] == [b"status=141"]


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGSEGV])
def test_a_child_killed_by_a_signal_kills_the_wrapper_with_it(
    logged_in: Sandbox, sig: signal.Signals
) -> None:
    result = logged_in.claude("-p", "hi", env=logged_in.shim_env(FAKE_CLAUDE_SIGNAL=str(int(sig))))
    assert result.returncode == -sig  # it dies of the same signal, as after an exec
    assert result.stdout.startswith(b"fake answer")


def _start_sleeping(sandbox: Sandbox, **extra: str) -> subprocess.Popen[bytes]:
    env = sandbox.shim_env(FAKE_CLAUDE_SLEEP="60", **extra)
    proc = start(sandbox, "-p", "hi", env=env)
    wait_for(sandbox.runs, "the child to start")
    return proc


def _gone(pid: int) -> bool:
    """Dead: no such process, or a zombie whose parent is not ours to judge (an orphan waits for
    init to reap it, and some containers' init never does)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT])
def test_signals_are_forwarded_and_the_status_passed_through(
    logged_in: Sandbox, sig: signal.Signals
) -> None:
    proc = _start_sleeping(logged_in)
    child = logged_in.runs()[0]["pid"]
    proc.send_signal(sig)
    _out, err = proc.communicate(timeout=30)
    assert proc.returncode == -sig
    assert b"Traceback" not in err
    wait_for(lambda: _gone(child), "the child to be reaped")


def test_a_child_outliving_the_grace_period_is_killed_with_its_tree(
    logged_in: Sandbox, tmp_path: Path
) -> None:
    grandchild_file = tmp_path / "grandchild"
    proc = _start_sleeping(
        logged_in,
        FAKE_CLAUDE_IGNORE_TERM="1",
        CLAUDE_WRAP_KILL_GRACE="0.3",
        FAKE_CLAUDE_GRANDCHILD=str(grandchild_file),
    )
    wait_for(lambda: grandchild_file.exists() and grandchild_file.read_text(), "the grandchild")
    child = logged_in.runs()[0]["pid"]
    grandchild = int(grandchild_file.read_text())
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert err == b"", err.decode()
    assert proc.returncode == -signal.SIGKILL
    wait_for(lambda: _gone(child) and _gone(grandchild), "the whole tree to be gone")


def test_a_grandchild_holding_the_pipes_does_not_keep_the_wrapper_alive(
    logged_in: Sandbox, tmp_path: Path
) -> None:
    grandchild_file = tmp_path / "grandchild"
    env = logged_in.shim_env(FAKE_CLAUDE_GRANDCHILD=str(grandchild_file))
    proc = start(logged_in, "-p", "hi", env=env, stderr=subprocess.DEVNULL)
    assert proc.stdout is not None
    out = proc.stdout.readline()
    assert proc.wait(timeout=30) == 0
    assert out.startswith(b"fake answer")
    os.kill(int(grandchild_file.read_text()), signal.SIGKILL)


def test_a_healthy_watched_run_imports_nothing_heavy(logged_in: Sandbox) -> None:
    python = logged_in.shim.read_text().splitlines()[0][2:].split()[0]
    assert logged_in.claude("-p", "hi").returncode == 0  # judges the file once: the verdict is kept
    result = subprocess.run(
        [python, "-I", "-S", "-X", "importtime", str(logged_in.shim), "-p", "hi"],
        env=logged_in.shim_env(),
        capture_output=True,
        cwd=logged_in.root,
        timeout=60,
    )
    assert result.returncode == 0 and result.stdout.startswith(b"fake answer")
    imported = {line.split("|")[-1].strip() for line in result.stderr.decode().splitlines()}
    assert "claude_wrap.watch.relay" in imported  # it was watched
    heavy_modules = (
        "json",
        "enum",
        "psutil",
        "pexpect",
        "httpx",
        "loguru",
        "subprocess",
        "selectors",
        "ctypes",  # prctl comes through _ctypes alone
    )
    for heavy in heavy_modules:
        assert heavy not in imported, heavy


@pytest.mark.timeout(60)
def test_held_output_is_released_when_an_editor_waits_for_it_before_writing(
    logged_in: Sandbox,
) -> None:
    """An editor that waits for the init line before it sends anything: the init line could
    still be the start of the failure, but holding it would deadlock, so after a quiet spell
    it goes out (a hang here fails by the timeout)."""
    proc = start(
        logged_in,
        *EDITOR,
        env=logged_in.shim_env(CLAUDE_WRAP_HOLD_QUIET="0.2"),
        stdin=subprocess.PIPE,
    )
    assert proc.stdin is not None and proc.stdout is not None
    assert json.loads(proc.stdout.readline())["subtype"] == "init"
    proc.stdin.write(b'{"type": "user", "text": "late"}\n')
    proc.stdin.close()
    assert json.loads(proc.stdout.readline())["type"] == "assistant"
    assert json.loads(proc.stdout.read().splitlines()[-1])["type"] == "result"
    assert proc.wait(timeout=30) == 0


def test_a_real_binary_that_cannot_start_is_one_line_and_127(logged_in: Sandbox) -> None:
    logged_in.fake.write_text("#!/nonexistent/interpreter\n")  # execve fails with ENOENT
    result = logged_in.claude("-p", "hi")
    assert result.returncode == 127
    assert result.stdout == b""
    (line,) = result.stderr.decode().splitlines()
    assert line == f"claude-wrap: cannot run {logged_in.fake}: No such file or directory"


def test_a_sigkilled_wrapper_leaves_no_orphaned_claude(logged_in: Sandbox) -> None:
    """SIGKILL cannot be forwarded; the child dies with the wrapper, as it would under exec."""
    proc = start(logged_in, "--print", env=logged_in.shim_env(FAKE_CLAUDE_SLEEP="30"))
    wait_for(logged_in.runs, "claude to start")
    (run,) = logged_in.runs()
    assert run["ppid"] == proc.pid  # watched: claude is the wrapper's child
    proc.kill()
    proc.wait(timeout=10)

    def gone() -> bool:
        try:
            os.kill(run["pid"], 0)
        except ProcessLookupError:
            return True
        return False

    wait_for(gone, "claude to die with its wrapper", limit=10)


@pytest.mark.timeout(60)
def test_an_editor_session_on_a_socket_kept_open_and_idle_is_answered(
    logged_in: Sandbox,
) -> None:
    # Node's child_process (the Agent SDK, Zed's adapter) gives its child a socket as stdin and
    # keeps it open and idle until the answer comes: a relay that reads stdin again after a
    # first message blocks there, while the answer waits in a pipe it no longer polls.
    ours, theirs = socket.socketpair()
    with ours, theirs:
        proc = start(logged_in, *EDITOR, env=logged_in.shim_env(), stdin=theirs.fileno())
        theirs.close()
        assert proc.stdout is not None
        ours.sendall(json.dumps({"type": "user", "text": "one"}).encode() + b"\n")
        assert json.loads(proc.stdout.readline())["type"] == "system"
        text = json.loads(proc.stdout.readline())["message"]["content"][0]["text"]
        assert "one" in text
        ours.shutdown(socket.SHUT_WR)
        assert json.loads(proc.stdout.readline())["type"] == "result"
        proc.wait(timeout=30)
    assert proc.returncode == 0
