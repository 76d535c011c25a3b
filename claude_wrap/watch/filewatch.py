"""Being told when a credentials file changes, within milliseconds, at no cost while nothing does.

Linux: inotify on the file's folder, through the kernel interface via ctypes (libc's
inotify_init1 / inotify_add_watch; the events are read with os.read). The well-kept libraries
(inotify_simple and friends) are this same thin ctypes layer; a dependency for three calls was
not worth it. The folder is watched, not the file: writers replace the file (a temp file renamed
over it: IN_MOVED_TO) or rewrite it in place (truncate, write, close: IN_CLOSE_WRITE), and a
watch on the file itself would be lost with its inode at the first rename.

macOS and the BSDs: select.kqueue (stdlib), on the folder (a rename into it is a write to the
folder) and on the file itself (an in-place rewrite), the file's watch renewed after each event.

Anywhere else, or when the kernel refuses (inotify watches exhausted): a poll of the file's
identity every `period` seconds, as before.

`wait(timeout)` blocks in the kernel until one of the files changed or the timeout passed, and
returns the paths that changed. Events are hints; callers judge the file itself.
"""

from __future__ import annotations

import contextlib
import os
import select
import struct
import sys
import time
from typing import TYPE_CHECKING, Any

from claude_wrap.storage import store

if TYPE_CHECKING:
    from collections.abc import Iterable

IN_MODIFY = 0x002
IN_ATTRIB = 0x004
IN_CLOSE_WRITE = 0x008
IN_MOVED_FROM = 0x040
IN_MOVED_TO = 0x080
IN_CREATE = 0x100
IN_DELETE = 0x200
IN_Q_OVERFLOW = 0x4000
IN_NONBLOCK = 0o4000
IN_CLOEXEC = 0o2000000
# Not IN_MODIFY: a file rewritten in place is judged when the writer closes it, not half-way.
MASK = IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | IN_CREATE | IN_DELETE | IN_ATTRIB
EVENT = struct.Struct("iIII")


# A file's identity, as the storage layer defines it (one os.stat): equal, the same file.
_identity = store.file_identity


class Notify:
    """How a Watcher learns of a change (CLAUDE_WRAP_NOTIFY's values, settings.WATCH_KINDS): the
    kernel's inotify or kqueue, or a stat every period; auto, the kernel's where it can
    (strings: see login.State)."""

    AUTO = "auto"
    INOTIFY = "inotify"
    KQUEUE = "kqueue"
    POLL = "poll"


class Watcher:
    """Watches some files; `kind` (a Notify) says how."""

    kind = Notify.POLL

    def __init__(self, files: Iterable[str], period: float = 0.5) -> None:
        self.files = list(dict.fromkeys(files))
        self.period = period
        self._seen = {f: _identity(f) for f in self.files}
        # interrupt() writes here: a wait blocked in the kernel returns at once, no timeout.
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        self.interrupted = False

    def interrupt(self) -> None:
        """End the current and every later wait (from another thread): the watcher is done."""
        self.interrupted = True
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"x")

    def wait(self, timeout: float | None) -> set[str]:
        """The files whose identity changed, waiting up to `timeout` s (None: until one does)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.interrupted:
            changed = self._changed()
            if changed:
                return changed
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return set()
            pause = self.period if left is None else min(self.period, left)
            select.select([self._wake_r], [], [], pause)
        return set()

    def _changed(self) -> set[str]:
        out = set()
        for f in self.files:
            ident = _identity(f)
            if ident != self._seen[f]:
                self._seen[f] = ident
                out.add(f)
        return out

    def close(self) -> None:
        for fd in (self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)

    def __enter__(self) -> Watcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class InotifyWatcher(Watcher):
    kind = Notify.INOTIFY

    def __init__(self, files: Iterable[str], period: float = 0.5) -> None:
        super().__init__(files, period)
        import ctypes  # noqa: PLC0415 - only sessions that watch pay for it

        libc = ctypes.CDLL(None, use_errno=True)
        self.fd = int(libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC))
        if self.fd < 0:
            errno = ctypes.get_errno()
            super().close()
            raise OSError(errno, "inotify_init1 failed")
        self._names: dict[int, dict[str, str]] = {}  # watch descriptor -> {file name: path}
        for f in self.files:
            folder, name = os.path.split(f)
            wd = int(libc.inotify_add_watch(self.fd, os.fsencode(folder or "."), MASK))
            if wd < 0:
                errno = ctypes.get_errno()
                self.close()
                raise OSError(errno, f"inotify_add_watch {folder} failed")
            self._names.setdefault(wd, {})[name] = f

    def wait(self, timeout: float | None) -> set[str]:
        deadline = None if timeout is None else time.monotonic() + timeout
        poller = select.poll()
        poller.register(self.fd, select.POLLIN)
        poller.register(self._wake_r, select.POLLIN)
        while not self.interrupted:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not poller.poll(None if left is None else int(left * 1000) + 1):
                if left is not None and deadline is not None and time.monotonic() >= deadline:
                    return set()
                continue
            changed = self._read()
            if changed:
                return changed
        return set()

    def _read(self) -> set[str]:
        try:
            data = os.read(self.fd, 65536)
        except BlockingIOError:
            return set()
        out = set()
        at = 0
        while at + EVENT.size <= len(data):
            wd, mask, _cookie, size = EVENT.unpack_from(data, at)
            raw = data[at + EVENT.size : at + EVENT.size + size].split(b"\0", 1)[0]
            at += EVENT.size + size
            if mask & IN_Q_OVERFLOW:
                out.update(self.files)  # events were lost: say everything may have changed
                continue
            path = self._names.get(wd, {}).get(os.fsdecode(raw))
            if path is not None:
                out.add(path)
        for f in out:
            self._seen[f] = _identity(f)
        return out

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        super().close()


class KqueueWatcher(Watcher):
    kind = Notify.KQUEUE

    def __init__(self, files: Iterable[str], period: float = 0.5) -> None:
        super().__init__(files, period)
        self.kq: Any = select.kqueue()  # type: ignore[attr-defined,unused-ignore]
        self._fds: dict[int, str] = {}  # open fd -> the path it watches (folder or file)
        self._folders: dict[str, list[str]] = {}
        for f in self.files:
            self._folders.setdefault(os.path.dirname(f) or ".", []).append(f)
        for folder in self._folders:
            self._watch(folder)
        for f in self.files:
            self._watch(f)
        k: Any = select
        self.kq.control([k.kevent(self._wake_r, filter=k.KQ_FILTER_READ, flags=k.KQ_EV_ADD)], 0, 0)

    def _watch(self, path: str) -> None:
        k: Any = select
        try:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_EVTONLY", 0) | os.O_CLOEXEC)
        except OSError:
            return  # a file not there yet: the folder's watch sees it arrive
        flags = k.KQ_NOTE_WRITE | k.KQ_NOTE_DELETE | k.KQ_NOTE_RENAME | k.KQ_NOTE_EXTEND
        flags |= k.KQ_NOTE_ATTRIB
        event = k.kevent(fd, filter=k.KQ_FILTER_VNODE, flags=k.KQ_EV_ADD | k.KQ_EV_CLEAR,
                         fflags=flags)
        self.kq.control([event], 0, 0)
        self._fds[fd] = path

    def wait(self, timeout: float | None) -> set[str]:
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.interrupted:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            events = self.kq.control(None, 16, left)
            if not events:
                if deadline is not None and time.monotonic() >= deadline:
                    return set()
                continue
            touched = {self._fds.get(e.ident, "") for e in events}
            # Renew the files' watches: after a rename over it, the old inode is not the file.
            for fd, path in list(self._fds.items()):
                if path in self.files:
                    del self._fds[fd]
                    os.close(fd)
                    self._watch(path)
            out = {f for f in self.files if f in touched or (os.path.dirname(f) or ".") in touched}
            changed = {f for f in out if _identity(f) != self._seen[f]}
            for f in changed:
                self._seen[f] = _identity(f)
            if changed:
                return changed
        return set()

    def close(self) -> None:
        for fd in self._fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        self._fds.clear()
        self.kq.close()
        super().close()


def open_watcher(files: Iterable[str], period: float = 0.5, kind: str = Notify.AUTO) -> Watcher:
    """The best watcher this system has (or `kind`: inotify, kqueue, poll)."""
    files = list(files)
    if kind in (Notify.AUTO, Notify.INOTIFY) and sys.platform.startswith("linux"):
        try:
            return InotifyWatcher(files, period)
        except (OSError, AttributeError):
            if kind == Notify.INOTIFY:
                raise
    if kind in (Notify.AUTO, Notify.KQUEUE) and hasattr(select, "kqueue"):
        try:
            return KqueueWatcher(files, period)
        except OSError:
            if kind == Notify.KQUEUE:
                raise
    return Watcher(files, period)
