"""The locks Claude Code takes around a refresh, taken as it does (docs/protocol.md section 3).

Claude Code uses proper-lockfile style directory locks: `mkdir` acquires, `rmdir` releases, and a
lock whose mtime is old enough counts as stale, so the holder touches it while it works. Up to
2.1.197 the refresh and legacy locks are stale after 10 s; 2.1.332 counts them stale only after
60 s and touches them every 5 s. We judge them by the longest stale time any supported version
uses (60 s) and touch ours every 2 s, faster than any version expects, so no version takes over a
lock we hold and we take over none whose holder may be alive.

2.1.332 also names the holder in an owner record (lockowner.py) and takes a lock over at once
when the record proves its holder gone. We read the record by its rules and write it while we hold
the locks, so either side takes over at once what the other left when it was killed.

Among our own processes we first serialise on an flock of the config folder: the kernel drops it
when a process dies, even by SIGKILL, so our processes never wait on each other's leftovers, and
only one of them at a time ever judges a directory lock stale and takes it over.

Each folder we create is also noted in a holder record in our state folder (never inside the lock
folder: proper-lockfile removes stale locks with a plain rmdir, which a file inside would defeat):
our pid and pid namespace, the folder's device and inode, and its mtime(s). A folder that
matches a record exactly, whose pid is dead, is ours and abandoned, and is taken over at once.
Claude Code's folders never match (another inode or another mtime to the nanosecond). These stay
needed beside the owner record: Claude Code keeps no owner record of `.storage-write.lock`, and
where no owner record can be written (no birth time from the file system, not Linux) they still
let our own processes take over at once what a killed claude-wrap left.
"""

from __future__ import annotations

import contextlib
import errno
import os
import sys
import threading
import time

from claude_wrap.config import fspath
from claude_wrap.config.protocol import LOCK_STALE_S, WRITE_LOCK_STALE_S
from claude_wrap.config.settings import legacy_lock_dir, refresh_lock_dir, write_lock_dir
from claude_wrap.errors import FlockTimeoutError, LockTimeoutError, LockUnavailableError
from claude_wrap.locks import lockowner
from claude_wrap.locks.flock import FolderFlock, HeldFlock
from claude_wrap.system.processes import pid_alive

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from typing import Any

# The refresh and legacy locks are judged by the longest stale time among supported versions
# (protocol.LOCK_STALE_S, 2.1.332's 60 s; up to 2.1.197 it was proper-lockfile's default, 10 s).
FUTURE_S = 60.0  # an mtime this far ahead is a clock change, not a live holder
HEARTBEAT_S = 2.0  # 2.1.332 touches every 5 s (protocol.LOCK_UPDATE_S) and expects no less
POLL_S = 0.05


class TakeOver:
    """Why a lock folder's holder is gone (DirLock.judge), each by the rule that takes it over
    (strings: see login.State; doctor shows them)."""

    STALE = "stale"  # its mtime is too old, or too far ahead (the clock moved)
    ABANDONED = "abandoned"  # our holder record: a claude-wrap process made it and is dead
    HOLDER_GONE = "holder gone"  # Claude Code's owner record proves its holder gone (lockowner)



class DirLock:
    def __init__(
        self,
        path: str,
        stale_s: float = LOCK_STALE_S,
        records: str | None = None,
        owner: tuple[str, str] | None = None,
    ) -> None:
        self.path = path
        self.stale_s = stale_s
        self.held = False
        # "stale", "abandoned" (our holder record) or "holder gone" (Claude Code's owner record)
        # when we removed another holder's folder
        self.taken_over = ""
        self.owner = owner  # (config dir, legacy lock) for `.oauth_refresh.lock`
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

    def judge(self) -> str:
        """Why this folder would be taken over now (STALE, ABANDONED, HOLDER_GONE), or "" when
        its holder may be alive (or there is no folder): the rule `try_acquire` applies, for
        those who only look (doctor), so that nobody removes a lock this module respects."""
        if self.is_stale():
            return TakeOver.STALE
        if self.abandoned():
            return TakeOver.ABANDONED
        if self.owner is not None and _gone_by_record(*self._owner_paths()) is not None:
            return TakeOver.HOLDER_GONE
        return ""

    def _owner_paths(self) -> tuple[str, str, str]:
        assert self.owner is not None
        return self.owner[0], self.path, self.owner[1]

    def clear(self) -> str:
        """Remove the folder when its holder is gone by `judge`'s rule; returns why ("" when
        it was left alone). Claude Code's owner record takes the legacy lock and the record
        with it (owner_takeover)."""
        why = TakeOver.STALE if self.is_stale() else TakeOver.ABANDONED if self.abandoned() else ""
        if why:
            # Stale (the holder died or the clock moved) or left by a dead claude-wrap:
            # proper-lockfile removes it and retries, and so do we.
            with contextlib.suppress(FileNotFoundError, NotADirectoryError):
                os.rmdir(self.path)
            return why
        if self.owner is not None and owner_takeover(*self._owner_paths()):
            return TakeOver.HOLDER_GONE  # removed already, with the legacy lock and the record
        return ""

    def try_acquire(self) -> bool:
        try:
            self._create()
        except FileExistsError:
            why = self.clear()
            if not why:
                return False
            try:
                self._create()
            except FileExistsError:
                return False
            self.taken_over = why
        self.held = True
        return True

    def _create(self) -> None:
        """Take the folder, our holder record written before it appears under its name.

        A plain mkdir then a record leaves a window in which a kill makes a lock nobody can
        prove abandoned, waited out for the whole 60 s. So, where the system can, the folder is
        made under a name of its own, noted, and renamed into place without replacing anything
        (renameat2 RENAME_NOREPLACE: fails like mkdir when the lock exists). Raises
        FileExistsError when the lock is held."""
        if os.path.lexists(self.path):
            # Held (or left): before our record is touched, which may still name a dead
            # claude-wrap's folder that is about to be judged abandoned.
            raise FileExistsError(self.path)
        if self.record is None or not _can_rename_noreplace():
            _mkdir(self.path)
            self._noted_now(self.path)
            return
        tmp = f"{self.path}{_LEFTOVER_MARK}{os.getpid()}-{os.urandom(4).hex()}"
        try:
            _mkdir(tmp)
        except LockUnavailableError as exc:
            raise LockUnavailableError(self.path, exc.reason) from None  # name the lock itself
        try:
            self._noted_now(tmp)
            if not _rename_noreplace(tmp, self.path):
                os.rmdir(tmp)  # not supported here after all: the plain way
                _mkdir(self.path)
                self._noted_now(self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.rmdir(tmp)
            with contextlib.suppress(OSError):
                os.unlink(self.record)  # it named our folder, which never became the lock
            raise

    def _noted_now(self, path: str) -> None:
        try:
            st = os.stat(path)
        except OSError:
            return
        self._ident = (st.st_dev, st.st_ino)
        self._mtime_ns = st.st_mtime_ns
        self._note(st.st_mtime_ns, st.st_mtime_ns)

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
            fspath.make_private_dirs(os.path.dirname(self.record))
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


def owner_takeover(cfg: str, lock_path: str, legacy_path: str) -> bool:
    """Remove the lock (and the legacy lock) when Claude Code's owner record proves its holder
    gone, by 2.1.332's own rules: the record names this very folder (birth time), this machine
    and pid namespace, a pid that is gone or is another process now, and the legacy lock is absent
    or the recorded one; the lock's mtime must not move meanwhile. True when removed."""
    found = _gone_by_record(cfg, lock_path, legacy_path)
    if found is None:
        return False
    rec, watched = found
    if os.path.lexists(legacy_path):
        if not lockowner.same_birth(
            lockowner.birth_ms(legacy_path), rec.get("legacyLockBirthtimeMs")
        ):
            return False  # made again since it was judged: someone else's, held
        with contextlib.suppress(FileNotFoundError):
            os.rmdir(legacy_path)
    if not _same_lock(lock_path, watched, rec):
        return False
    try:
        os.rmdir(lock_path)
    except FileNotFoundError:
        return False
    except OSError:
        return False
    lockowner.remove_if(cfg, rec["pid"], rec["lockBirthtimeMs"])
    return True


def _same_lock(lock_path: str, watched: int, rec: dict[str, object]) -> bool:
    """The folder is still the recorded one (its birth time), its mtime unmoved since `watched`."""
    try:
        unmoved = os.stat(lock_path).st_mtime_ns == watched
    except OSError:
        return False
    return unmoved and lockowner.same_birth(lockowner.birth_ms(lock_path), rec["lockBirthtimeMs"])


def _gone_by_record(
    cfg: str, lock_path: str, legacy_path: str
) -> tuple[dict[str, object], int] | None:
    """(the owner record, the lock's mtime) when the record proves the lock's holder gone by
    2.1.332's rules (see owner_takeover), else None. Removes nothing."""
    rec = lockowner.read(cfg)
    if rec is None:
        return None  # no record: the stale time stands
    try:
        watched = os.stat(lock_path).st_mtime_ns
    except OSError:
        return None
    if not _same_lock(lock_path, watched, rec):
        return None
    if rec["pidDomain"] != lockowner.pid_domain() or rec["pidSpace"] != lockowner.pid_space():
        return None  # another machine or pid namespace: its pids mean nothing here
    if not lockowner.pid_view_trusted() or not lockowner.holder_gone(rec):
        return None
    if os.path.lexists(legacy_path) and not lockowner.same_birth(
        lockowner.birth_ms(legacy_path), rec.get("legacyLockBirthtimeMs")
    ):
        return None  # the legacy lock is someone else's: held
    return rec, watched


def config_locks(cfg: str, records: str | None) -> list[DirLock]:
    """Claude Code's three lock folders of `cfg` (refresh, legacy, storage-write), each with the
    stale time and the records it is taken with here, for doctor to judge and clear."""
    refresh, legacy = refresh_lock_dir(cfg), legacy_lock_dir(cfg)
    return [
        DirLock(refresh, records=records, owner=(cfg, legacy)),
        DirLock(legacy, records=records),
        DirLock(write_lock_dir(cfg), stale_s=WRITE_LOCK_STALE_S, records=records),
    ]


# `_create`'s folder under a name of its own, `<lock>.cw-<pid>-<hex>`: it lives for the
# microseconds between its mkdir and its rename into place, unless a kill falls in between.
_LEFTOVER_MARK = ".cw-"
LEFTOVER_AGE_S = LOCK_STALE_S  # older than any lock: no process is still about to rename it


def leftover_folders(lock_path: str) -> list[tuple[str, int]]:
    """(path, pid) of each folder `_create` made for `lock_path` that a kill left behind, sorted:
    empty and never a lock (nothing waits on it), only clutter beside the config folder."""
    folder, base = os.path.split(lock_path)
    prefix = base + _LEFTOVER_MARK
    found = []
    try:
        names = os.listdir(folder or ".")
    except OSError:
        return []
    for name in sorted(names):
        if not name.startswith(prefix):
            continue
        pid, sep, tail = name[len(prefix) :].partition("-")
        if sep and pid.isdigit() and tail.isalnum():
            found.append((os.path.join(folder, name), int(pid)))
    return found


def remove_leftover_folders(lock_path: str) -> int:
    """Remove the leftovers of `lock_path` whose process is gone and that are older than any
    lock; rmdir only, so a folder with anything in it stays. Returns how many went."""
    removed = 0
    for path, pid in leftover_folders(lock_path):
        try:
            if time.time() - os.lstat(path).st_mtime < LEFTOVER_AGE_S or pid_alive(pid):
                continue
            os.rmdir(path)
            removed += 1
        except OSError:
            pass
    return removed


def _mkdir(path: str) -> None:
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        raise
    except OSError as exc:
        # Not "someone holds it" but "it cannot be taken at all": read-only or full folder.
        raise LockUnavailableError(path, exc.strerror or str(exc)) from None


_RENAME_NOREPLACE = 1
_renameat2: Any = None


def _can_rename_noreplace() -> bool:
    global _renameat2  # noqa: PLW0603 - looked up once per process
    if _renameat2 is None:
        _renameat2 = False
        if sys.platform.startswith("linux"):
            import ctypes  # noqa: PLC0415 - only around a refresh

            with contextlib.suppress(OSError, AttributeError):
                libc = ctypes.CDLL(None, use_errno=True)
                _renameat2 = libc.renameat2
    return _renameat2 is not False


def _rename_noreplace(src: str, dst: str) -> bool:
    """Rename unless `dst` exists (FileExistsError then); False when the file system cannot."""
    import ctypes  # noqa: PLC0415

    at_fdcwd = -100
    if _renameat2(at_fdcwd, os.fsencode(src), at_fdcwd, os.fsencode(dst), _RENAME_NOREPLACE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EEXIST, errno.ENOTEMPTY):
        raise FileExistsError(dst)
    if err in (errno.EINVAL, errno.ENOSYS):
        return False
    raise LockUnavailableError(dst, os.strerror(err))


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
    past `wait_s` raises `LockTimeoutError` (`FlockTimeoutError` for our flock). Everything
    taken is released in reverse order on every exit path. Yields the folder locks (to report
    any taken over).
    """
    deadline = time.monotonic() + wait_s
    flock = FolderFlock(cfg) if held is None else HeldFlock(held)
    locks = [
        DirLock(refresh_path, records=records, owner=(cfg, legacy_path)),
        DirLock(legacy_path, records=records),
    ]
    beat = _Heartbeat(locks)
    noted: float | None = None
    try:
        try:
            _wait_for(flock.try_acquire, cfg, deadline, wait_s, on_wait)
        except LockTimeoutError:
            # The kernel drops an flock with its holder: waiting helps, removing a folder never.
            raise FlockTimeoutError(cfg, wait_s) from None
        for lock in locks:
            _wait_for(lock.try_acquire, lock.path, deadline, wait_s, on_wait)
        beat.start()
        # Name ourselves as Claude Code does, so 2.1.332 takes over at once if we are killed.
        birth = lockowner.birth_ms(refresh_path)
        if birth is not None and lockowner.write(cfg, birth, lockowner.birth_ms(legacy_path)):
            noted = birth
        yield locks
    finally:
        beat.stopped.set()
        if noted is not None:
            # Removed before the locks, as Claude Code does: a record never outlives its lock.
            lockowner.remove_if(cfg, os.getpid(), noted)
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
WRITE_WAIT_S = WRITE_LOCK_STALE_S + 5.0


@contextlib.contextmanager
def write_lock(
    path: str, wait_s: float = WRITE_WAIT_S, records: str | None = None
) -> Iterator[None]:
    """Claude Code's `.storage-write.lock`, held around the file write only."""
    lock = DirLock(path, stale_s=WRITE_LOCK_STALE_S, records=records)
    _wait_for(lock.try_acquire, path, time.monotonic() + wait_s, wait_s, None)
    try:
        yield
    finally:
        lock.release()
