"""The locks Claude Code takes around a refresh, taken the same way (shared/protocol.md section 3).

Claude Code uses proper-lockfile style directory locks: `mkdir` acquires, `rmdir` releases, and a
lock whose mtime is older than 10 s counts as stale, so the holder touches it while it works. We
take the same directories in the same order with the same heartbeat, so Claude Code and we never
spend one refresh token twice.

Among our own processes we first serialise on an flock of the config folder: the kernel drops it
when a process dies, even by SIGKILL, so our processes never wait on each other's leftovers, and
only one of them at a time ever judges a directory lock stale and takes it over.

A lock folder a killed claude-wrap left behind would still block everyone for the 10 s stale time.
So each folder we create is noted in a holder record in our state folder (never inside the lock
folder: proper-lockfile removes stale locks with a plain rmdir, which a file inside would defeat):
our pid and pid namespace, the folder's device and inode, and its mtime(s). A folder that
matches a record exactly, whose pid is dead, is ours and abandoned, and is taken over at once.
Claude Code's folders never match (another inode or another mtime to the nanosecond), so for them
the 10 s rule stands.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time

from claude_wrap.errors import LockTimeoutError, LockUnavailableError
from claude_wrap.flock import FolderFlock, HeldFlock
from claude_wrap.paths import make_private_dirs
from claude_wrap.store import pid_alive

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

STALE_S = 10.0  # proper-lockfile's default, as Claude Code uses it
WRITE_STALE_S = 15.0
FUTURE_S = 60.0  # an mtime this far ahead is a clock change, not a live holder
HEARTBEAT_S = 2.0
POLL_S = 0.05


class DirLock:
    def __init__(self, path: str, stale_s: float = STALE_S, records: str | None = None) -> None:
        self.path = path
        self.stale_s = stale_s
        self.held = False
        self.taken_over = ""  # "stale" or "abandoned" when we removed another holder's folder
        self.record = _record_path(records, path) if records else None
        self._ident: tuple[int, int] = (0, 0)
        self._mtime_ns = 0

    def is_stale(self, now: float | None = None) -> bool:
        try:
            mtime = os.stat(self.path).st_mtime
        except FileNotFoundError:
            return False
        now = time.time() if now is None else now
        return mtime < now - self.stale_s or mtime > now + FUTURE_S

    def try_acquire(self) -> bool:
        try:
            _mkdir(self.path)
        except FileExistsError:
            why = "stale" if self.is_stale() else "abandoned" if self.abandoned() else ""
            if not why:
                return False
            # Stale (the holder died or the clock moved) or left by a dead claude-wrap:
            # proper-lockfile removes it and retries, and so do we.
            with contextlib.suppress(FileNotFoundError, NotADirectoryError):
                os.rmdir(self.path)
            try:
                _mkdir(self.path)
            except FileExistsError:
                return False
            self.taken_over = why
        self.held = True
        try:
            st = os.stat(self.path)
        except OSError:
            return True
        self._ident = (st.st_dev, st.st_ino)
        self._mtime_ns = st.st_mtime_ns
        self._note(st.st_mtime_ns, st.st_mtime_ns)
        return True

    def abandoned(self) -> bool:
        """True when the folder is one a claude-wrap process made and that process is dead."""
        if self.record is None:
            return False
        try:
            with open(self.record, encoding="ascii") as f:
                pid, pidns, dev, ino, mtime_a, mtime_b = (int(x) for x in f.read(200).split())
            st = os.stat(self.path)
        except (OSError, ValueError):
            return False
        if (st.st_dev, st.st_ino) != (dev, ino) or st.st_mtime_ns not in (mtime_a, mtime_b):
            return False
        # A pid from another pid namespace (a container sharing this folder) cannot be checked.
        return pidns == _pid_namespace() and pid != os.getpid() and not pid_alive(pid)

    def _note(self, mtime_a: int, mtime_b: int) -> None:
        if self.record is None:
            return
        dev, ino = self._ident
        text = f"{os.getpid()} {_pid_namespace()} {dev} {ino} {mtime_a} {mtime_b}\n"
        tmp = f"{self.record}.{os.getpid()}"
        try:
            make_private_dirs(os.path.dirname(self.record))
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
            try:
                os.write(fd, text.encode("ascii"))
            finally:
                os.close(fd)
            os.replace(tmp, self.record)
        except OSError:
            # No record: a folder we leave behind then waits out the stale time, nothing worse.
            with contextlib.suppress(OSError):
                os.unlink(tmp)

    def touch(self) -> None:
        if self.held:
            # Note the new mtime before setting it: a kill between the two still matches.
            new = time.time_ns()
            self._note(self._mtime_ns, new)
            with contextlib.suppress(OSError):
                os.utime(self.path, ns=(new, new))
                self._mtime_ns = new

    def release(self) -> None:
        if self.held:
            self.held = False
            with contextlib.suppress(OSError):
                os.rmdir(self.path)
            if self.record is not None:
                with contextlib.suppress(OSError):
                    os.unlink(self.record)


def _mkdir(path: str) -> None:
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        raise
    except OSError as exc:
        # Not "someone holds it" but "it cannot be taken at all": read-only or full folder.
        raise LockUnavailableError(path, exc.strerror or str(exc)) from None


def _record_path(records: str, lock_path: str) -> str:
    import hashlib  # noqa: PLC0415 - only when refreshing

    return os.path.join(records, hashlib.sha256(os.fsencode(lock_path)).hexdigest()[:32])


def _pid_namespace() -> int:
    try:
        return os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        return 0  # no /proc (macOS): one namespace


class _Heartbeat(threading.Thread):
    def __init__(self, locks: list[DirLock]) -> None:
        super().__init__(name="claude-wrap-lock-heartbeat", daemon=True)
        self.locks = locks
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(HEARTBEAT_S):
            for lock in self.locks:
                lock.touch()


@contextlib.contextmanager
def refresh_locks(
    cfg: str,
    *,
    refresh_path: str,
    legacy_path: str,
    wait_s: float,
    on_wait: Callable[[], bool] | None = None,
    records: str | None = None,
    held: FolderFlock | None = None,
) -> Iterator[list[DirLock]]:
    """Hold our flock, then Claude Code's refresh lock, then its legacy lock, with a heartbeat.
    `held`: our flock of `cfg`, when the caller took it already (the shim, flock.take_turn).

    `on_wait` is called between polls while a lock is held elsewhere; when it returns True (it
    saw the holder's result on disk) the wait ends with `WaitEnded` and nothing is held. A wait
    past `wait_s` raises `LockTimeoutError`. Everything taken is released in reverse order on
    every exit path. Yields the folder locks (to report any taken over).
    """
    deadline = time.monotonic() + wait_s
    flock = FolderFlock(cfg) if held is None else HeldFlock(held)
    locks = [DirLock(refresh_path, records=records), DirLock(legacy_path, records=records)]
    beat = _Heartbeat(locks)
    try:
        _wait_for(
            flock.try_acquire, "the claude-wrap refresh flock of " + cfg, deadline, wait_s, on_wait
        )
        for lock in locks:
            _wait_for(lock.try_acquire, lock.path, deadline, wait_s, on_wait)
        beat.start()
        yield locks
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


# Taken after the refresh token is spent: waiting is far cheaper than losing the new token, so
# wait out a lock's whole stale time and then some.
WRITE_WAIT_S = WRITE_STALE_S + 5.0


@contextlib.contextmanager
def write_lock(
    path: str, wait_s: float = WRITE_WAIT_S, records: str | None = None
) -> Iterator[None]:
    """Claude Code's `.storage-write.lock`, held around the file write only."""
    lock = DirLock(path, stale_s=WRITE_STALE_S, records=records)
    _wait_for(lock.try_acquire, path, time.monotonic() + wait_s, wait_s, None)
    try:
        yield
    finally:
        lock.release()
