"""Our own processes' lock on a config folder: an flock of the folder itself.

lock.py takes it first, before Claude Code's lock folders, so that our processes never wait on
each other's leftovers (the kernel drops an flock when its process dies, even by SIGKILL). The
shim takes the same flock before anything heavy when it finds the login due (`take_turn`): of a
herd of shims started at once on one expired login, one refreshes while the others wait in the
kernel, having imported nothing, and go straight on once the login is fine (bench/run
contention: each waiter used to import `site`, the refresher and their dependencies first).

The holder also closes a gate on its waiters while it gets its request ready (`hold_gate`):
an exclusive flock of a file of ours named for the folder (`gate_file`, in our state folder;
not Claude Code's credentials file, so that nobody else's lock can hold our waiters there),
opened again once the request is on the wire (`open_gate`). The waiters wait at the gate
first, then warm up (import what they will run next), then wait for the folder's flock. So
their imports run while the holder waits on the network, instead of on the CPU the holder
imports httpx and builds its client with, or after the refresh, when all of them wake at once
(bench/run contention). A holder that sends nothing opens the gate when it lets go of the
flock; a waiter that finds no gate warms up at once: the gate only orders work, it never
decides who refreshes.

Only builtins and fcntl here, `posix` rather than `os` (fspath.py says why): this runs in the
shim before `site`, and all it does before the wait is on the critical path of a herd.
"""

from __future__ import annotations

# `_signal`, not `signal`: that one imports enum (see process.python_signals).
import _signal  # type: ignore[import-not-found]  # no typeshed stub
import errno
import fcntl
import posix
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable


# O_NONBLOCK: should the name ever be a FIFO, opening it must not wait for a writer.
_GATE_FLAGS = posix.O_RDONLY | posix.O_CLOEXEC | posix.O_NOFOLLOW | posix.O_NONBLOCK


class FolderFlock:
    """The flock of one folder, held from `try_acquire` until `release` (or our death)."""

    def __init__(self, folder: str) -> None:
        # O_CLOEXEC: a claude we exec or start must not inherit it (and hold it while it runs).
        self.fd = posix.open(folder, posix.O_RDONLY | posix.O_DIRECTORY | posix.O_CLOEXEC)
        self.gate = -1

    def try_acquire(self) -> bool:
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                return False
            raise
        return True

    def gate_file(self, state: str) -> str:
        """The gate's file in the folder `state`: one per config folder, by its identity."""
        st = posix.fstat(self.fd)
        return f"{state}/gate-{st.st_dev}-{st.st_ino}"

    def hold_gate(self, state: str) -> None:
        """Close the gate (the module's docstring), if we can at once: without it, waiters
        warm up straight away, as they did before there was a gate."""
        try:
            fd = posix.open(self.gate_file(state), _GATE_FLAGS | posix.O_CREAT, 0o600)
        except OSError:
            return  # no state folder yet (a first run): no gate, nothing worse
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            posix.close(fd)
            return
        self.gate = fd

    def open_gate(self) -> None:
        """Our request is out: let the waiters warm up. Idempotent."""
        if self.gate >= 0:
            posix.close(self.gate)
            self.gate = -1

    def release(self) -> None:
        self.open_gate()
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

    def open_gate(self) -> None:
        pass  # the gate is its owner's to open

    def release(self) -> None:
        pass


def take_turn(
    folder: str, wait_s: float, state: str = "", warm: Callable[[], None] | None = None
) -> FolderFlock | None:
    """Before a refresh: the folder's flock when we got it at once (we go first: hold it through
    the refresh, see lock.refresh_locks), its gate in the folder `state` closed (the module's
    docstring). Otherwise another process of ours holds it, most likely refreshing: wait at the
    gate, call `warm`, wait for the flock, then None, the flock released again (judge the login
    afresh: it is most likely fine now).

    Raises OSError when the folder cannot be opened, FlockTimeoutError (a
    LockTimeoutError) after `wait_s` in all.
    """
    flock = FolderFlock(folder)
    deadline = time.monotonic() + wait_s
    try:
        if flock.try_acquire():
            if state:
                flock.hold_gate(state)
            return flock
        if warm is not None:
            if state:
                _wait_at_gate(flock.gate_file(state), folder, deadline, wait_s)
            warm()
        _wait(flock.fd, folder, deadline, wait_s)
    except BaseException:
        flock.release()
        raise
    flock.release()  # our turn: the login is most likely fine now, which the caller checks
    return None


def _wait_at_gate(gate: str, folder: str, deadline: float, wait_s: float) -> None:
    try:
        fd = posix.open(gate, _GATE_FLAGS)
    except OSError:
        return  # no file, no gate: warm up now
    try:
        _wait(fd, folder, deadline, wait_s)
    finally:
        posix.close(fd)  # drops our shared flock of it at once: the next holder's gate is free


class _Late(Exception):  # noqa: N818 - control flow, never shown
    """The wait for the flock ran out of time."""


def _late(_signum: int, _frame: object) -> None:
    raise _Late


def _wait(fd: int, folder: str, deadline: float, wait_s: float) -> None:
    """Wait in the kernel until the holder lets go of `fd`'s file, with SIGALRM to bound the
    wait at `deadline` (`wait_s` is the whole wait's length, for the message): polling
    every 10 ms cost each of 31 waiting shims about 5 ms of CPU (bench/run contention, 41-46
    -> 35-40 ms each). Shared: all the waiters get it at once when the holder lets go, instead
    of queueing for it one after another."""
    old = _signal.signal(_signal.SIGALRM, _late)
    try:
        _signal.setitimer(_signal.ITIMER_REAL, max(deadline - time.monotonic(), 0.001))
        try:
            fcntl.flock(fd, fcntl.LOCK_SH)
        finally:
            _signal.setitimer(_signal.ITIMER_REAL, 0)
    except _Late:
        from claude_wrap.errors import FlockTimeoutError  # noqa: PLC0415 - rare

        raise FlockTimeoutError(folder, wait_s) from None
    finally:
        _signal.signal(_signal.SIGALRM, old)
