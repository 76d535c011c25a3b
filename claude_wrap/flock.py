"""Our own processes' lock on a config folder: an flock of the folder itself.

lock.py takes it first, before Claude Code's lock folders, so that our processes never wait on
each other's leftovers (the kernel drops an flock when its process dies, even by SIGKILL). The
shim takes the same flock before anything heavy when it finds the login due (`take_turn`): of a
herd of shims started at once on one expired login, one refreshes while the others wait in the
kernel, having imported nothing, and go straight on once the login is fine (bench/run
contention: each waiter used to import `site`, the refresher and their dependencies first).

Only builtins and fcntl here, `posix` rather than `os` (fspath.py says why): this runs in the
shim before `site`, and all it does before the wait is on the critical path of a herd.
"""

from __future__ import annotations

# `_signal`, not `signal`: that one imports enum (see shim._python_signals).
import _signal  # type: ignore[import-not-found]  # no typeshed stub
import errno
import fcntl
import posix


class FolderFlock:
    """The flock of one folder, held from `try_acquire` until `release` (or our death)."""

    def __init__(self, folder: str) -> None:
        # O_CLOEXEC: a claude we exec or start must not inherit it (and hold it while it runs).
        self.fd = posix.open(folder, posix.O_RDONLY | posix.O_DIRECTORY | posix.O_CLOEXEC)

    def try_acquire(self) -> bool:
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                return False
            raise
        return True

    def release(self) -> None:
        if self.fd >= 0:
            posix.close(self.fd)  # closing drops the flock
            self.fd = -1


class HeldFlock(FolderFlock):
    """A FolderFlock this process already holds (the shim's, see `take_turn`), handed to
    lock.refresh_locks: taking it again through another open file would wait on ourselves.
    Its owner releases it."""

    def __init__(self, held: FolderFlock) -> None:
        self.fd = held.fd  # not super().__init__: no second open file, no second flock

    def try_acquire(self) -> bool:
        return True

    def release(self) -> None:
        pass


def take_turn(folder: str, wait_s: float) -> FolderFlock | None:
    """Before a refresh: the folder's flock when we got it at once (we go first: hold it through
    the refresh, see lock.refresh_locks). Otherwise another process of ours holds it, most likely
    refreshing: wait until it is done, then None, the flock released again (judge the login
    afresh: it is most likely fine now).

    Raises OSError when the folder cannot be opened, LockTimeoutError after `wait_s`.
    """
    flock = FolderFlock(folder)
    try:
        if flock.try_acquire():
            return flock
        _wait(flock, folder, wait_s)
    except BaseException:
        flock.release()
        raise
    flock.release()  # our turn: the login is most likely fine now, which the caller checks
    return None


class _Late(Exception):  # noqa: N818 - control flow, never shown
    """The wait for the flock ran out of time."""


def _late(_signum: int, _frame: object) -> None:
    raise _Late


def _wait(flock: FolderFlock, folder: str, wait_s: float) -> None:
    """Wait in the kernel until the holder lets go, with SIGALRM to bound the wait: polling
    every 10 ms cost each of 31 waiting shims about 5 ms of CPU (bench/run contention, 41-46
    -> 35-40 ms each). Shared: all the waiters get it at once when the holder lets go, instead
    of queueing for it one after another."""
    old = _signal.signal(_signal.SIGALRM, _late)
    try:
        _signal.setitimer(_signal.ITIMER_REAL, max(wait_s, 0.001))
        try:
            fcntl.flock(flock.fd, fcntl.LOCK_SH)
        finally:
            _signal.setitimer(_signal.ITIMER_REAL, 0)
    except _Late:
        from claude_wrap.errors import LockTimeoutError  # noqa: PLC0415 - rare

        raise LockTimeoutError(f"the claude-wrap refresh flock of {folder}", wait_s) from None
    finally:
        _signal.signal(_signal.SIGALRM, old)
