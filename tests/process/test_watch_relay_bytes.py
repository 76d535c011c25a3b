"""Large streams through the relay: the same bytes arrive whatever our stdout and stdin are (a
pipe, a file, a file opened for appending, a socket as Node's child_process gives), through each
of its paths: read and write while a retry is still possible, splice between pipes once it is
not, and read and write throughout where there is no splice (CLAUDE_WRAP_SPLICE=0, as on macOS).
And the copy of stdin kept for a replay is bounded, and let go of once no replay can happen."""

from __future__ import annotations

import fcntl
import hashlib
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from claude_wrap.config.settings import Settings
from claude_wrap.watch import pipes
from claude_wrap_testing.tokenserver import TokenServer
from tests.conftest import Sandbox, login_doc

MIB = 1 << 20
SPLICE = pytest.mark.parametrize("splice", ["1", "0"], ids=["splice", "no-splice"])

# Reads stdin to its end, then prints its size and hash; with READER_FIRST set, prints a line
# first (the watcher then judges the run healthy before stdin starts flowing); with
# READER_PEAK set, then prints the wrapper's (its parent's) peak resident size in KiB.
READER = f"""#!{sys.executable}
import hashlib, os
if os.environ.get("READER_FIRST"):
    os.write(1, b"reading\\n")
h, n = hashlib.sha256(), 0
while True:
    data = os.read(0, 1 << 20)
    if not data:
        break
    h.update(data)
    n += len(data)
os.write(1, b"%d %s\\n" % (n, h.hexdigest().encode()))
if os.environ.get("READER_PEAK"):
    with open("/proc/%d/status" % os.getppid()) as f:
        peak = [line.split()[1] for line in f if line.startswith("VmHWM:")]
    os.write(1, b"peak %s\\n" % peak[0].encode())
"""


@pytest.fixture
def logged_in(sandbox: Sandbox) -> Sandbox:
    sandbox.write(login_doc())
    return sandbox


def _blob(path: Path, size: int) -> bytes:
    """`size` bytes that start like a healthy answer, then every byte value, in no pattern."""
    data = b"an answer\n" + os.urandom(size - 10)
    path.write_bytes(data)
    return data


def _pump_socket(sock: socket.socket, into: list[bytes]) -> threading.Thread:
    def read() -> None:
        while chunk := sock.recv(1 << 20):
            into.append(chunk)

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    return thread


@SPLICE
@pytest.mark.parametrize("kind", ["pipe", "file", "append", "socket"])
def test_large_output_arrives_byte_for_byte_on_any_stdout(
    logged_in: Sandbox, tmp_path: Path, kind: str, splice: str
) -> None:
    blob = _blob(tmp_path / "blob", 24 * MIB + 12345)
    logged_in.fake.write_text(f"#!/bin/sh\nexec cat {tmp_path / 'blob'}\n")
    argv = [str(logged_in.shim), "-p", "hi"]
    env = logged_in.shim_env(CLAUDE_WRAP_SPLICE=splice)
    out = tmp_path / "out"
    if kind == "pipe":
        result = subprocess.run(argv, env=env, capture_output=True, timeout=120, check=False)
        assert result.returncode == 0, result.stderr
        assert result.stdout == blob
        return
    if kind == "socket":
        ours, theirs = socket.socketpair()
        got: list[bytes] = []
        reader = _pump_socket(ours, got)
        with theirs:
            status = subprocess.run(
                argv, env=env, stdout=theirs.fileno(), timeout=120, check=False
            )
        reader.join(timeout=60)
        assert status.returncode == 0
        assert b"".join(got) == blob
        return
    before = b"written before\n" if kind == "append" else b""
    out.write_bytes(before)
    with open(out, "ab" if kind == "append" else "r+b") as f:
        status = subprocess.run(argv, env=env, stdout=f, timeout=120, check=False)
    assert status.returncode == 0
    assert out.read_bytes() == before + blob


@SPLICE
@pytest.mark.parametrize("first", [True, False], ids=["judged-first", "silent"])
@pytest.mark.parametrize("kind", ["pipe", "file", "socket"])
def test_large_input_reaches_claude_byte_for_byte_from_any_stdin(
    logged_in: Sandbox, tmp_path: Path, kind: str, first: bool, splice: str
) -> None:
    """Judged first: the copy stops at once, and stdin goes straight to the child (a pipe
    spliced). Silent: it is copied until it outgrows the replay limit, then goes straight."""
    logged_in.fake.write_text(READER)
    blob = _blob(tmp_path / "blob", 24 * MIB + 777)
    env = logged_in.shim_env(CLAUDE_WRAP_REPLAY_LIMIT=str(8 * MIB), CLAUDE_WRAP_SPLICE=splice)
    if first:
        env["READER_FIRST"] = "1"
    argv = [str(logged_in.shim), "-p", "hi"]
    if kind == "pipe":
        result = subprocess.run(argv, env=env, input=blob, capture_output=True, timeout=120)
        out = result.stdout
    elif kind == "file":
        with open(tmp_path / "blob", "rb") as f:
            result = subprocess.run(argv, env=env, stdin=f, capture_output=True, timeout=120)
        out = result.stdout
    else:
        ours, theirs = socket.socketpair()

        def feed() -> None:
            ours.sendall(blob)
            ours.shutdown(socket.SHUT_WR)

        writer = threading.Thread(target=feed, daemon=True)
        writer.start()
        with theirs:
            result = subprocess.run(
                argv, env=env, stdin=theirs.fileno(), capture_output=True, timeout=120
            )
        writer.join(timeout=60)
        ours.close()
        out = result.stdout
    assert result.returncode == 0, result.stderr
    lines = out.decode().splitlines()
    assert lines[-1] == f"{len(blob)} {hashlib.sha256(blob).hexdigest()}"
    assert lines[:-1] == (["reading"] if first else [])


def test_the_pipe_stdin_comes_through_is_left_as_it_was(logged_in: Sandbox, tmp_path: Path) -> None:
    """Whoever made stdin's pipe owns it: the relay does not grow it (a grown pipe is charged to
    the user's pipe allowance, and past it every new pipe of theirs, in any process, is small)."""
    logged_in.fake.write_text(READER)
    blob = _blob(tmp_path / "blob", 4 * MIB + 99)
    r, w = os.pipe()
    before = fcntl.fcntl(w, fcntl.F_GETPIPE_SZ)
    argv = [str(logged_in.shim), "-p", "hi"]
    env = logged_in.shim_env(CLAUDE_WRAP_REPLAY_LIMIT=str(MIB))
    with subprocess.Popen(argv, env=env, stdin=r, stdout=subprocess.PIPE) as proc:
        os.close(r)
        os.write(w, blob)  # through only once the relay has started taking stdin
        size = fcntl.fcntl(w, fcntl.F_GETPIPE_SZ)
        os.close(w)
        out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0
    assert size == before
    assert out.decode().splitlines() == [f"{len(blob)} {hashlib.sha256(blob).hexdigest()}"]


def test_a_failed_run_gets_megabytes_of_stdin_replayed_exactly(
    logged_in: Sandbox, token_server: TokenServer, tmp_path: Path
) -> None:
    blob = os.urandom(3 * MIB + 5)
    env = logged_in.shim_env(FAKE_CLAUDE_FAIL_FIRST="1")
    result = logged_in.claude("-p", input=blob, env=env)
    assert result.returncode == 0, result.stderr
    runs = logged_in.runs()
    assert len(runs) == 2
    expected = hashlib.sha256(blob).hexdigest()
    assert [(r["stdin_len"], r["stdin_sha"]) for r in runs] == [(len(blob), expected)] * 2


def _peak_mib(out: bytes) -> float:
    (line,) = [x for x in out.decode().splitlines() if x.startswith("peak ")]
    return int(line.split()[1]) / 1024


def test_the_replay_copy_is_let_go_once_the_run_is_judged_healthy(
    logged_in: Sandbox,
) -> None:
    """96 MiB on stdin after the first line judged the run healthy: no retry can come, so none of
    it is kept (the default limit would keep 64 MiB of it)."""
    logged_in.fake.write_text(READER)
    env = logged_in.shim_env(READER_FIRST="1", READER_PEAK="1")
    result = logged_in.claude("-p", input=b"z" * (96 * MIB), env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    assert _peak_mib(result.stdout) < 48


def test_the_replay_copy_stops_growing_at_its_limit(logged_in: Sandbox) -> None:
    """A child that prints nothing until it has read everything: stdin is copied, but only up to
    the limit; the rest is never kept."""
    logged_in.fake.write_text(READER)
    env = logged_in.shim_env(READER_PEAK="1", CLAUDE_WRAP_REPLAY_LIMIT=str(4 * MIB))
    result = logged_in.claude("-p", input=b"z" * (96 * MIB), env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    assert _peak_mib(result.stdout) < 48


@pytest.mark.parametrize("kind", ["pipe", "file"])
def test_a_failed_run_replays_stdin_exactly_whatever_stdin_is_and_without_a_temp_folder(
    logged_in: Sandbox, token_server: TokenServer, tmp_path: Path, kind: str
) -> None:
    """The replay copy is kept in a memory file, spliced in from a pipe or written from a file
    read; a TMPDIR that does not exist changes nothing (no file of ours is ever put there)."""
    blob = _blob(tmp_path / "in", 5 * MIB + 3)
    env = logged_in.shim_env(FAKE_CLAUDE_FAIL_FIRST="1", TMPDIR=str(tmp_path / "missing"))
    if kind == "pipe":
        result = logged_in.claude("-p", input=blob, env=env)
    else:
        with (tmp_path / "in").open("rb") as f:
            result = subprocess.run(
                [str(logged_in.shim), "-p"], stdin=f, env=env, capture_output=True, timeout=60,
                check=False,
            )
    assert result.returncode == 0, result.stderr
    expected = hashlib.sha256(blob).hexdigest()
    assert [(r["stdin_len"], r["stdin_sha"]) for r in logged_in.runs()] == [
        (len(blob), expected)
    ] * 2


def test_the_replay_copy_is_kept_outside_the_wrappers_memory(logged_in: Sandbox) -> None:
    """A child that prints nothing until it has read everything: the default limit keeps 64 MiB
    of stdin for a replay, in a memory file that is never mapped, not in the wrapper's heap."""
    logged_in.fake.write_text(READER)
    env = logged_in.shim_env(READER_PEAK="1")
    result = logged_in.claude("-p", input=b"z" * (96 * MIB), env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.decode().splitlines()[0].startswith(f"{96 * MIB} ")
    assert _peak_mib(result.stdout) < 40


@SPLICE
@pytest.mark.parametrize("where", ["memfd", "temp folder", "heap"])
def test_the_replay_copy_gives_the_same_bytes_at_each_launch_wherever_it_is_kept(
    tmp_path: Path, where: str, splice: str
) -> None:
    """pipes.Replay on real pipes: stdin spliced (or written) in, given to the child, rewound and
    given again; the memory file, else an unlinked file in TMPDIR, else (neither) our heap."""
    folder = tmp_path if where == "temp folder" else tmp_path / "missing"
    copy = pipes.Replay(
        1 << 20, Settings({"TMPDIR": str(folder)}), memfd=where == "memfd", splice=splice == "1"
    )
    blob = os.urandom(200_000)
    src_r, src_w = os.pipe()
    os.set_blocking(src_r, False)

    def feed() -> None:
        os.write(src_w, blob)
        os.close(src_w)

    writer = threading.Thread(target=feed)
    writer.start()
    got: list[bytes] = [b"", b""]
    for launch in range(2):
        dst_r, dst_w = os.pipe()
        os.set_blocking(dst_w, False)
        while True:
            if launch == 0 and not copy.eof:
                n = copy.take_from(src_r) if splice == "1" else -1
                if n == -1:
                    try:
                        data = os.read(src_r, 65536)
                    except BlockingIOError:
                        n = None
                    else:
                        copy.add(data)
                        n = len(data)
                if n == 0:
                    copy.eof = True
            while copy.backlog:
                if copy.give_to(dst_w) is None:
                    got[launch] += os.read(dst_r, 1 << 20)
            if copy.eof:
                break
        os.close(dst_w)
        while chunk := os.read(dst_r, 1 << 20):
            got[launch] += chunk
        os.close(dst_r)
        copy.rewind()
    writer.join()
    os.close(src_r)
    assert (copy.fd >= 0) == (where != "heap")
    assert got == [blob, blob]
    assert list(tmp_path.iterdir()) == []  # an unlinked file leaves no name behind
    copy.free()
