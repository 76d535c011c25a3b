"""Our own processes' lock on a config folder: an flock of the folder itself.

lock.py takes it first, before Claude Code's lock folders, so that our processes never wait on
each other's leftovers (the kernel drops an flock when its process dies, even by SIGKILL). The
shim takes the same flock before anything heavy when it finds the login due (`take_turn`): of a
herd of shims started at once on one expired login, one refreshes while the others wait in the
kernel, having imported nothing, and go straight on once the login is fine (bench/run
contention: each waiter used to import `site`, the refresher and their dependencies first).

Only builtins and fcntl here: this runs in the shim before `site`.
"""

from __future__ import annotations

# `_signal`, not `signal`: that one imports enum (see shim._python_signals).
import _signal  # type: ignore[import-not-found]  # no typeshed stub
import _thread
import errno
import fcntl
import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable


class FolderFlock:
    """The flock of one folder, held from `try_acquire` until `release` (or our death)."""

    def __init__(self, folder: str) -> None:
        # O_CLOEXEC: a claude we exec or start must not inherit it (and hold it while it runs).
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
        if self.fd >= 0:
            os.close(self.fd)  # closing drops the flock
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


def take_turn(
    folder: str, wait_s: float, meanwhile: Callable[[], object] | None = None
) -> FolderFlock | None:
    """Before a refresh: the folder's flock when we got it at once (we go first: hold it through
    the refresh, see lock.refresh_locks). Otherwise another process of ours holds it, most likely
    refreshing: wait until it is done, then None, the flock released again (judge the login
    afresh: it is most likely fine now). `meanwhile`, when we wait: work needed after the wait,
    started in the background before it (see `_in_background`).

    Raises OSError when the folder cannot be opened, LockTimeoutError after `wait_s`.
    """
    flock = FolderFlock(folder)
    try:
        if flock.try_acquire():
            return flock
        if meanwhile is not None:
            _in_background(meanwhile)
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


def _in_background(work: Callable[[], object]) -> None:
    """`work` in a thread of its own at the lowest CPU priority, while the main thread waits.

    Of a herd of shims started at once on one expired login, the one refreshing needs the CPU
    until its request is out, then waits ~200 ms or more for the token server; the others wait
    on the flock. They used to import the relay only after the refresh, all at once, on the
    clock: ~2 of a waiter's ~4 ms of CPU after the wait, and the burst's last 110-130 ms after
    the flock was let go (32 shims, bench/run contention). Imported here instead, it fills the
    time the refresher spends waiting for the server (26-53 ms after it let go), and at nice 19
    it barely slows the refresher before that: a nice-0 thread outweighs it ~70 times.

    Not joined: should the work still be running once the wait is over (starved by busier
    processes), the main thread goes on; an import it needs that is under way here makes it wait
    for that one module only (the import system's per-module locks), and the fork of claude
    that follows is already made safe for threads (process.spawn; rollover.py runs one too).
    Linux only: there the nice value belongs to the thread (setpriority(2) on its thread id), so
    the main thread, and the claude it forks, keep theirs. Signals stay with the main thread:
    the alarm that bounds the wait must interrupt the main thread's flock call.
    """
    if not sys.platform.startswith("linux"):
        return  # the main thread does the work after the wait, as without this

    def run() -> None:
        try:
            os.setpriority(os.PRIO_PROCESS, _thread.get_native_id(), 19)
            work()
        except BaseException:  # noqa: BLE001, S110 - the main thread does it again and says why
            pass

    old = _signal.pthread_sigmask(_signal.SIG_BLOCK, _signal.valid_signals())  # the thread's
    try:
        _thread.start_new_thread(run, ())
    except RuntimeError:
        pass  # no thread to be had: the main thread does the work after the wait
    finally:
        _signal.pthread_sigmask(_signal.SIG_SETMASK, old)
