"""Interactive runs: keystroke-to-echo round trip on a terminal, through the shim against direct.

The runner is the terminal: it owns a pty, starts `claude` on its slave side (as a shell would),
and times one byte written to the master until the child's echo of it comes back. The child puts
its terminal in raw mode and echoes what it reads, like a TUI drawing a typed character.
"""

from __future__ import annotations

import errno
import fcntl
import os
import pty
import select
import signal
import struct
import sys
import termios
import time
from pathlib import Path
from typing import Any

from bench.harness import Sandbox, alternate, median, percentile

ECHO = f"""#!{sys.executable} -IS
import os, tty
tty.setraw(0)
os.write(1, b"READY")
while True:
    data = os.read(0, 1024)
    if not data or b"~" in data:
        break
    os.write(1, data)
"""

KEYS = b"abcdefghijklmnopqrstuvwxyz0123456789"
TIMEOUT_S = 10.0


class NoEchoError(RuntimeError):
    pass


def _read_until(fd: int, marker: bytes, deadline: float) -> bytes:
    seen = b""
    while marker not in seen:
        left = deadline - time.monotonic()
        if left <= 0:
            raise NoEchoError(f"waited {TIMEOUT_S} s for {marker!r}; saw {seen[-200:]!r}")
        ready, _, _ = select.select([fd], [], [], left)
        if not ready:
            continue
        try:
            chunk = os.read(fd, 4096)
        except OSError as exc:
            if exc.errno == errno.EIO:
                raise NoEchoError(
                    f"the terminal closed before {marker!r}; saw {seen[-200:]!r}"
                ) from None
            raise
        if not chunk:
            raise NoEchoError(f"end of output before {marker!r}")
        seen += chunk
    return seen


def _session(argv: list[str], env: dict[str, str], keys: int) -> list[float]:
    pid, fd = pty.fork()
    if pid == 0:  # the child: the pty's slave is already its controlling terminal and stdio
        try:
            for sig in (signal.SIGPIPE, signal.SIGXFSZ):
                signal.signal(sig, signal.SIG_DFL)
            os.execve(argv[0], argv, env)
        finally:
            os._exit(127)
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    times: list[float] = []
    try:
        _read_until(fd, b"READY", time.monotonic() + TIMEOUT_S)
        for i in range(keys):
            key = KEYS[i % len(KEYS) : i % len(KEYS) + 1]
            t0 = time.perf_counter_ns()
            os.write(fd, key)
            _read_until(fd, key, time.monotonic() + TIMEOUT_S)
            times.append((time.perf_counter_ns() - t0) / 1000)  # microseconds
            time.sleep(0.003)  # a fast typist: keys a few ms apart, never queued
        os.write(fd, b"~")
        deadline = time.monotonic() + TIMEOUT_S
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 0.2)
            if ready:
                try:
                    if not os.read(fd, 4096):
                        break
                except OSError:
                    break  # EIO: the child side is closed
            elif os.waitpid(pid, os.WNOHANG)[0]:
                pid = 0
                break
    finally:
        if pid:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            os.waitpid(pid, 0)
        os.close(fd)
    return times


def pty_roundtrip(root: Path, reps: int, *, quick: bool) -> dict[str, Any]:
    sb = Sandbox(root)
    sb.write_login()
    folder = sb.child("echo", ECHO)
    env = sb.env(folder)
    keys = 40 if quick else 200
    shim = [sb.shim]
    direct = [str(folder / "claude")]
    _session(shim, env, 1)  # warm the verdict cache
    d_all: list[float] = []
    w_all: list[float] = []

    def a() -> float:
        d_all.extend(_session(direct, env, keys))
        return 0.0

    def b() -> float:
        w_all.extend(_session(shim, env, keys))
        return 0.0

    alternate(reps, a, b)
    return {
        "keystrokes": len(w_all),
        "direct_median_us": round(median(d_all), 1),
        "direct_p99_us": round(percentile(d_all, 99), 1),
        "wrapped_median_us": round(median(w_all), 1),
        "wrapped_p99_us": round(percentile(w_all, 99), 1),
        "added_median_us": round(median(w_all) - median(d_all), 1),
        "added_p99_us": round(percentile(w_all, 99) - percentile(d_all, 99), 1),
    }
