"""The locks Claude Code takes around a refresh, taken the same way (shared/protocol.md section 3).

Claude Code uses proper-lockfile style directory locks: `mkdir` acquires, `rmdir` releases, and a
lock whose mtime is older than 10 s counts as stale, so the holder touches it while it works. We
take the same directories in the same order with the same heartbeat, so Claude Code and we never
spend one refresh token twice.

Among our own processes we first serialise on an flock of the config folder: the kernel drops it
when a process dies, even by SIGKILL, so our processes never wait on each other's leftovers, and
only one of them at a time ever judges a directory lock stale and takes it over.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import threading
import time

from claude_wrap.errors import LockTimeoutError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

STALE_S = 10.0  # proper-lockfile's default, as Claude Code uses it
WRITE_STALE_S = 15.0
FUTURE_S = 60.0  # an mtime this far ahead is a clock change, not a live holder
HEARTBEAT_S = 2.0
POLL_S = 0.05


class DirLock:
    def __init__(self, path: str, stale_s: float = STALE_S) -> None:
        self.path = path
        self.stale_s = stale_s
        self.held = False

    def is_stale(self, now: float | None = None) -> bool:
        try:
            mtime = os.stat(self.path).st_mtime
        except FileNotFoundError:
            return False
        now = time.time() if now is None else now
        return mtime < now - self.stale_s or mtime > now + FUTURE_S

    def try_acquire(self) -> bool:
        try:
            os.mkdir(self.path, 0o700)
        except FileExistsError:
            if not self.is_stale():
                return False
            # Stale: the holder died or the clock moved. proper-lockfile removes it and retries.
            with contextlib.suppress(FileNotFoundError, NotADirectoryError):
                os.rmdir(self.path)
            try:
                os.mkdir(self.path, 0o700)
            except FileExistsError:
                return False
        self.held = True
        return True

    def touch(self) -> None:
        if self.held:
            with contextlib.suppress(OSError):
                os.utime(self.path)

    def release(self) -> None:
        if self.held:
            self.held = False
            with contextlib.suppress(OSError):
                os.rmdir(self.path)


class _Heartbeat(threading.Thread):
    def __init__(self, locks: list[DirLock]) -> None:
        super().__init__(name="claude-wrap-lock-heartbeat", daemon=True)
        self.locks = locks
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(HEARTBEAT_S):
            for lock in self.locks:
                lock.touch()


class _FolderFlock:
    def __init__(self, folder: str) -> None:
        self.fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)

    def try_acquire(self) -> bool:
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                return False
            raise
        return True

    def release(self) -> None:
        os.close(self.fd)  # closing drops the flock


@contextlib.contextmanager
def refresh_locks(
    cfg: str,
    *,
    refresh_path: str,
    legacy_path: str,
    wait_s: float,
    on_wait: Callable[[], bool] | None = None,
) -> Iterator[None]:
    """Hold our flock, then Claude Code's refresh lock, then its legacy lock, with a heartbeat.

    `on_wait` is called between polls while a lock is held elsewhere; when it returns True (it
    saw the holder's result on disk) the wait ends with `WaitEnded` and nothing is held. A wait
    past `wait_s` raises `LockTimeoutError`. Everything taken is released in reverse order on
    every exit path.
    """
    deadline = time.monotonic() + wait_s
    flock = _FolderFlock(cfg)
    locks = [DirLock(refresh_path), DirLock(legacy_path)]
    beat = _Heartbeat(locks)
    try:
        _wait_for(
            flock.try_acquire, "the claude-wrap refresh flock of " + cfg, deadline, wait_s, on_wait
        )
        for lock in locks:
            _wait_for(lock.try_acquire, lock.path, deadline, wait_s, on_wait)
        beat.start()
        yield
    finally:
        beat.stopped.set()
        for lock in reversed(locks):
            lock.release()
        flock.release()


class WaitEnded(Exception):  # noqa: N818 - control flow, never shown
    """`on_wait` said the wait is no longer needed."""


def _wait_for(
    attempt: Callable[[], bool],
    what: str,
    deadline: float,
    wait_s: float,
    on_wait: Callable[[], bool] | None,
) -> None:
    while not attempt():
        if on_wait is not None and on_wait():
            raise WaitEnded
        if time.monotonic() >= deadline:
            raise LockTimeoutError(what, wait_s)
        time.sleep(POLL_S)


@contextlib.contextmanager
def write_lock(path: str, wait_s: float = 5.0) -> Iterator[None]:
    """Claude Code's `.storage-write.lock`, held around the file write only."""
    lock = DirLock(path, stale_s=WRITE_STALE_S)
    _wait_for(lock.try_acquire, path, time.monotonic() + wait_s, wait_s, None)
    try:
        yield
    finally:
        lock.release()
