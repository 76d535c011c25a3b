"""Every kind of descriptor a relayed run can be given, through the installed shim in front of the
fake claude: stdin a pipe, a socket (as Node's child_process gives it: the Agent SDK, Zed's
adapter), a terminal, a file, /dev/null or closed; stdout a pipe, a socket, a file or a terminal
(stdin then not one: a headless run). The kinds that can be kept open are kept open and idle
after a message, as an editor keeps them: the answer must come all the same. Each runs with
splice and without (CLAUDE_WRAP_SPLICE=0, the way a system without splice takes, macOS), and
each waits with a deadline, so a relay that blocks fails in seconds, not at the suite's
timeout."""

from __future__ import annotations

import hashlib
import json
import os
import select
import socket
import subprocess
import sys
import termios
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from claude_wrap_testing.tokenserver import TokenServer
from tests.conftest import Sandbox, login_doc

EDITOR = ("-p", "--input-format", "stream-json", "--output-format", "stream-json", "--verbose")
STDINS = ["pipe", "socket", "pty", "file", "devnull", "closed"]
KEPT_OPEN = ["pipe", "socket", "pty"]
SPLICE = pytest.mark.parametrize("splice", ["1", "0"], ids=["splice", "no-splice"])
WAIT = 20.0  # seconds any one answer may take before the relay is taken to hang


@pytest.fixture
def logged_in(sandbox: Sandbox) -> Sandbox:
    sandbox.write(login_doc())
    return sandbox


def message(text: str) -> bytes:
    return json.dumps({"type": "user", "text": text}).encode() + b"\n"


def echoed(obj: dict[str, Any]) -> str:
    assert obj["type"] == "assistant", obj
    return str(obj["message"]["content"][0]["text"])


class Stdin:
    """What the shim is given as stdin (`fd`, None: closed), and the test's end of it."""

    def __init__(self, kind: str, tmp_path: Path, content: bytes = b"") -> None:
        self.kind = kind
        self.fd: int | None = None
        self.ours = -1
        self.sock: socket.socket | None = None
        if kind == "pipe":
            self.fd, self.ours = os.pipe()
        elif kind == "socket":
            self.sock, theirs = socket.socketpair()
            self.fd = theirs.detach()
        elif kind == "pty":
            self.ours, self.fd = os.openpty()
            attrs = termios.tcgetattr(self.fd)
            attrs[3] &= ~termios.ECHO  # nobody reads the echo
            termios.tcsetattr(self.fd, termios.TCSANOW, attrs)
        elif kind == "file":
            path = tmp_path / "stdin"
            path.write_bytes(content)
            self.fd = os.open(path, os.O_RDONLY)
        elif kind == "devnull":
            self.fd = os.open(os.devnull, os.O_RDONLY)
        else:
            assert kind == "closed"

    def given(self) -> None:
        """The shim has it: close our copy of its end."""
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def send(self, data: bytes) -> None:
        if self.sock is not None:
            self.sock.sendall(data)
        else:
            view = memoryview(data)
            while view:
                view = view[os.write(self.ours, view) :]

    def end(self) -> None:
        """The consumer has nothing more to say."""
        if self.sock is not None:
            self.sock.shutdown(socket.SHUT_WR)
        elif self.kind == "pty":
            os.write(self.ours, b"\x04")  # VEOF at the start of a line: read returns 0
        elif self.ours >= 0:
            os.close(self.ours)
            self.ours = -1

    def close(self) -> None:
        self.given()
        if self.sock is not None:
            self.sock.close()
        if self.ours >= 0:
            os.close(self.ours)


class Stdout:
    """What the shim is given as stdout (`fd`), and a reader of what arrives there, each line
    awaited with a deadline."""

    def __init__(self, kind: str, tmp_path: Path) -> None:
        self.kind = kind
        self.buf = bytearray()
        self.path = tmp_path / "stdout"
        self.sock: socket.socket | None = None
        if kind == "pipe":
            self.ours, self.fd = os.pipe()
        elif kind == "socket":
            self.sock, theirs = socket.socketpair()
            self.ours, self.fd = self.sock.fileno(), theirs.detach()
        elif kind == "pty":  # a terminal (`producer | claude -p` in one): lines end in \r\n
            self.ours, self.fd = os.openpty()
        else:
            assert kind == "file"
            self.fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            self.ours = os.open(self.path, os.O_RDONLY)

    def given(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def _read(self) -> bytes:
        try:
            return os.read(self.ours, 1 << 20)
        except OSError:
            return b""  # EIO: a terminal whose other side is closed

    def _more(self, left: float) -> bool:
        if self.kind == "file":
            chunk = self._read()
            if not chunk:
                time.sleep(min(left, 0.01))
        else:
            if not select.select([self.ours], [], [], left)[0]:
                return True
            chunk = self._read()
            if not chunk:
                return False
        self.buf += chunk
        return True

    def line(self, what: str) -> dict[str, Any]:
        deadline = time.monotonic() + WAIT
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            assert left > 0, f"no {what} within {WAIT} s: the relay is stuck ({self.buf!r})"
            assert self._more(left), f"stdout ended before the {what}: {self.buf!r}"
        line, _, rest = self.buf.partition(b"\n")
        self.buf = bytearray(rest)
        return dict(json.loads(line))

    def until_end(self) -> bytes:
        """All that comes until the end of file, within the deadline."""
        deadline = time.monotonic() + WAIT
        while True:
            left = deadline - time.monotonic()
            assert left > 0, f"stdout did not end within {WAIT} s: the relay is stuck"
            if not self._more(left):
                break
        out, self.buf = bytes(self.buf), bytearray()
        return out

    def rest(self) -> bytes:
        """What is left, once the shim has exited."""
        while True:
            chunk = self._read()
            if not chunk:
                break
            self.buf += chunk
        out, self.buf = bytes(self.buf), bytearray()
        return out

    def close(self) -> None:
        self.given()
        if self.sock is not None:
            self.sock.close()
        else:
            os.close(self.ours)


def start(
    sandbox: Sandbox, args: tuple[str, ...], stdin: Stdin, stdout: Stdout, env: dict[str, str]
) -> subprocess.Popen[bytes]:
    argv = [str(sandbox.shim), *args]
    if stdin.fd is None:
        argv = ["/bin/sh", "-c", 'exec "$0" "$@" <&-', *argv]  # stdin closed
    proc = subprocess.Popen(
        argv,
        env=env,
        cwd=sandbox.root,
        stdin=stdin.fd,
        stdout=stdout.fd,
        stderr=subprocess.PIPE,
    )
    stdin.given()
    stdout.given()
    return proc


def finish(proc: subprocess.Popen[bytes]) -> None:
    try:
        _, err = proc.communicate(timeout=WAIT)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise AssertionError("the shim did not end once its stdin had") from None
    assert proc.returncode == 0, err


def editor_session(
    sandbox: Sandbox, tmp_path: Path, stdin_kind: str, stdout_kind: str, env: dict[str, str]
) -> None:
    """An editor's session: a message, then stdin left open and idle until the answer has come;
    another; then the end. Stdin that cannot stay open (a file, /dev/null, closed) brings what
    it has at once."""
    kept_open = stdin_kind in KEPT_OPEN
    words = ["one", "two"] if stdin_kind in (*KEPT_OPEN, "file") else []
    stdin = Stdin(stdin_kind, tmp_path, b"" if kept_open else b"".join(map(message, words)))
    stdout = Stdout(stdout_kind, tmp_path)
    try:
        proc = start(sandbox, EDITOR, stdin, stdout, env)
        try:
            for i, word in enumerate(words):
                if kept_open:
                    stdin.send(message(word))
                if i == 0:
                    assert stdout.line("init line")["type"] == "system"
                want = "echo " + message(word).decode().strip()
                assert echoed(stdout.line(f"answer to {word!r}")) == want
            if not words:
                assert stdout.line("init line")["type"] == "system"
            stdin.end()
            assert stdout.line("result")["type"] == "result"
            finish(proc)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert stdout.rest() == b""
    finally:
        stdin.close()
        stdout.close()


@pytest.mark.timeout(60)
@SPLICE
@pytest.mark.parametrize("stdin_kind", STDINS)
def test_an_editor_session_is_answered_whatever_stdin_is(
    logged_in: Sandbox, tmp_path: Path, stdin_kind: str, splice: str
) -> None:
    editor_session(
        logged_in, tmp_path, stdin_kind, "pipe", logged_in.shim_env(CLAUDE_WRAP_SPLICE=splice)
    )


@pytest.mark.timeout(60)
@SPLICE
@pytest.mark.parametrize("stdout_kind", ["pipe", "socket", "file", "pty"])
@pytest.mark.parametrize("stdin_kind", ["pipe", "socket"])
def test_an_editor_session_is_answered_whatever_stdout_is(
    logged_in: Sandbox, tmp_path: Path, stdin_kind: str, stdout_kind: str, splice: str
) -> None:
    editor_session(
        logged_in, tmp_path, stdin_kind, stdout_kind, logged_in.shim_env(CLAUDE_WRAP_SPLICE=splice)
    )


@pytest.mark.timeout(60)
@SPLICE
@pytest.mark.parametrize("stdin_kind", KEPT_OPEN)
def test_an_editor_session_failed_at_start_is_retried_and_answered_while_stdin_stays_open(
    logged_in: Sandbox, token_server: TokenServer, tmp_path: Path, stdin_kind: str, splice: str
) -> None:
    """The first run refuses the login before it reads a line; the relay has copied what came
    meanwhile and gives it to the retried run: its answer comes while stdin stays open."""
    env = logged_in.shim_env(FAKE_CLAUDE_FAIL_FIRST="1", CLAUDE_WRAP_SPLICE=splice)
    editor_session(logged_in, tmp_path, stdin_kind, "pipe", env)
    assert len(logged_in.runs()) == 2
    assert len(token_server.requests) == 1


@pytest.mark.timeout(60)
@SPLICE
@pytest.mark.parametrize("stdin_kind", ["pipe", "socket", "file", "devnull", "closed"])
def test_a_run_failed_at_start_gets_the_whole_of_stdin_replayed_whatever_stdin_is(
    logged_in: Sandbox, token_server: TokenServer, tmp_path: Path, stdin_kind: str, splice: str
) -> None:
    """The first run reads all of stdin, then refuses the login: the retried one gets the same
    bytes from the replay copy. (A terminal is not copied: claude reads it itself.)"""
    payload = os.urandom(300_000) if stdin_kind in ("pipe", "socket", "file") else b""
    stdin = Stdin(stdin_kind, tmp_path, payload)
    stdout = Stdout("pipe", tmp_path)
    env = logged_in.shim_env(FAKE_CLAUDE_FAIL_FIRST="1", CLAUDE_WRAP_SPLICE=splice)
    proc = start(logged_in, ("-p",), stdin, stdout, env)
    try:
        if stdin_kind in ("pipe", "socket"):

            def feed() -> None:
                stdin.send(payload)
                stdin.end()

            threading.Thread(target=feed, daemon=True).start()
        finish(proc)
        assert stdout.rest().startswith(b"fake answer: ")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        stdin.close()
        stdout.close()
    runs = logged_in.runs()
    expected = (len(payload), hashlib.sha256(payload).hexdigest())
    assert [(r["stdin_len"], r["stdin_sha"]) for r in runs] == [expected] * 2
    assert len(token_server.requests) == 1


# A claude that writes output until the way to its consumer is full (no room for half a second,
# its stdout made non-blocking: its own end of the pipe), says so (the file STDIN_SEEN.full), reads
# the whole of its stdin and says how much it got (STDIN_SEEN), then writes the rest of its BYTES
# of output and its parent's (the wrapper's) peak resident size in KiB (STDIN_SEEN.peak).
SPLIT = f"""#!{sys.executable}
import os, select
seen = os.environ["STDIN_SEEN"]
def say(path, text):
    with open(path + ".tmp", "w") as f:
        f.write(text)
    os.rename(path + ".tmp", path)
data = b"an answer\\n" + b"y" * (int(os.environ["BYTES"]) - 10)
view = memoryview(data)
os.set_blocking(1, False)
while True:
    try:
        view = view[os.write(1, view[: 1 << 16]) :]
    except BlockingIOError:
        if not select.select([], [1], [], 0.5)[1]:
            break
say(seen + ".full", str(len(data) - len(view)))
n = 0
while True:
    chunk = os.read(0, 1 << 20)
    if not chunk:
        break
    n += len(chunk)
say(seen, str(n))
os.set_blocking(1, True)
while view:
    view = view[os.write(1, view[: 1 << 20]) :]
with open("/proc/%d/status" % os.getppid()) as f:
    peak = [line.split()[1] for line in f if line.startswith("VmHWM:")][0]
say(seen + ".peak", peak)
"""


@pytest.mark.timeout(60)
@SPLICE
@pytest.mark.parametrize("stdout_kind", ["pipe", "socket"])
def test_a_consumer_that_stops_reading_stdout_holds_back_stdout_only(
    logged_in: Sandbox, tmp_path: Path, stdout_kind: str, splice: str
) -> None:
    """Claude reads its stdin while its output waits for a consumer that reads nothing yet: run
    directly it gets all of its stdin meanwhile, and so it must through us. Its output is held
    back, not gathered in the wrapper: the wrapper's peak size stays far below the output's."""
    logged_in.fake.write_text(SPLIT)
    seen = tmp_path / "seen"
    size = 48 << 20
    env = logged_in.shim_env(BYTES=str(size), STDIN_SEEN=str(seen), CLAUDE_WRAP_SPLICE=splice)
    stdin = Stdin("pipe", tmp_path)
    stdout = Stdout(stdout_kind, tmp_path)
    payload = os.urandom(2 << 20)
    proc = start(logged_in, ("-p", "hi"), stdin, stdout, env)
    try:
        deadline = time.monotonic() + WAIT
        while not (tmp_path / "seen.full").exists():
            assert time.monotonic() < deadline, "claude never found its stdout full"
            time.sleep(0.02)

        def feed() -> None:
            stdin.send(payload)
            stdin.end()

        threading.Thread(target=feed, daemon=True).start()
        deadline = time.monotonic() + WAIT
        while not seen.exists():
            assert time.monotonic() < deadline, "claude's stdin stalled behind its stdout"
            time.sleep(0.02)
        assert seen.read_text() == str(len(payload))
        got = stdout.until_end()
        finish(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        stdin.close()
        stdout.close()
    assert len(got) == size and got.startswith(b"an answer\n") and got.count(b"y") == size - 10
    assert int((tmp_path / "seen.peak").read_text()) < 40 * 1024
