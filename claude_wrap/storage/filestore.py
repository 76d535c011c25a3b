"""The file backend of the storage layer: the credentials file (Linux and Windows, and macOS
with CLAUDE_WRAP_STORAGE=file). The only module that reads or writes it.

Reads are bounded and never follow a path into anything but a regular file. Writes never lose a
login: a temp file in the same folder (0600 from birth, O_EXCL), fsync, rename over the file,
fsync the folder. A symlinked file is written through to its target so the link stays a link.
Space for the new file is reserved *before* a refresh token is spent, so a full disk fails early.
"""

from __future__ import annotations

import errno
import os
import stat

from claude_wrap.config.settings import StorageKind
from claude_wrap.errors import CredentialsError, WriteError
from claude_wrap.findings import Finding, Level
from claude_wrap.storage import store
from claude_wrap.system import processes

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from claude_wrap.storage.store import Ident, Snapshot

MAX_BYTES = store.MAX_BYTES
TMP_PREFIX = ".credentials.json.tmp.cw."


def _problem(exc: OSError) -> str:
    if exc.errno == errno.ELOOP:
        return "is a symlink loop"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return "cannot be read: permission denied"
    if exc.errno == errno.EISDIR:
        return "is a directory, not a file"
    return f"cannot be read: {exc.strerror or exc}"


def read(path: str) -> Snapshot | None:
    """The file's snapshot, None when there is no file. CredentialsError when it is unusable."""
    try:
        # O_NONBLOCK: a FIFO planted at the path must not hang us; it is refused below.
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    except FileNotFoundError:
        if os.path.islink(path):
            raise CredentialsError(
                path, f"is a symlink to {os.readlink(path)}, which does not exist"
            ) from None
        return None
    except OSError as exc:
        raise CredentialsError(path, _problem(exc)) from None
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise CredentialsError(path, "is a directory, not a file")
        if not stat.S_ISREG(st.st_mode):
            raise CredentialsError(path, "is not a regular file")
        if st.st_size > MAX_BYTES:
            raise CredentialsError(path, f"is {st.st_size} bytes, over the 1 MiB limit")
        chunks = []
        total = 0
        while total <= MAX_BYTES:
            chunk = os.read(fd, MAX_BYTES + 1 - total)
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
    except OSError as exc:
        raise CredentialsError(path, _problem(exc)) from None
    finally:
        os.close(fd)
    raw = b"".join(chunks)
    if len(raw) > MAX_BYTES:
        raise CredentialsError(path, "grew past the 1 MiB limit while being read")
    return store.Snapshot(path, raw, store.parse(path, raw), store.identity(st))


def target_of(path: str) -> str:
    """Where a write lands: through any symlink, so the link itself survives."""
    return os.path.realpath(path)


class PendingWrite:
    """A temp file beside the target, created and sized before anything irreversible happens.

    Use as a context manager: the temp file is removed on every exit path unless committed.
    """

    def __init__(self, path: str, reserve: int = 0) -> None:
        self.path = path
        self.target = target_of(path)
        folder = os.path.dirname(self.target) or "."
        self.tmp = os.path.join(folder, f"{TMP_PREFIX}{os.getpid()}.{os.urandom(4).hex()}")
        try:
            # 0600 from the moment it exists: O_CREAT with the mode, never a chmod afterwards.
            self.fd = os.open(
                self.tmp,
                os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                0o600,
            )
        except OSError as exc:
            raise WriteError(self.target, _why(exc), token_spent=False) from None
        try:
            if reserve:
                _reserve(self.fd, reserve)
        except OSError as exc:
            self.close()
            raise WriteError(self.target, _why(exc), token_spent=False) from None

    def commit(
        self, doc: Any, *, token_spent: bool, unless_changed: Ident | None = None
    ) -> bool:
        """Store `doc`; True when done. `unless_changed`: the file's identity as the caller read
        it; when the file is no longer that one at the last moment before the rename (a writer
        that takes no lock rewrote it), nothing is written and False comes back."""
        data = store.serialise(doc)
        try:
            view = memoryview(data)
            while view:
                n = os.write(self.fd, view)
                view = view[n:]
            os.ftruncate(self.fd, len(data))
            os.fsync(self.fd)
            os.close(self.fd)
            self.fd = -1
            if unless_changed is not None and store.file_identity(self.path) != unless_changed:
                self.close()
                return False
            os.replace(self.tmp, self.target)
        except OSError as exc:
            self.close()
            raise WriteError(self.target, _why(exc), token_spent=token_spent) from None
        _fsync_dir(os.path.dirname(self.target) or ".")
        return True

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        try:
            os.unlink(self.tmp)
        except FileNotFoundError:
            pass
        except OSError:
            pass  # left behind: a stray temp file never blocks anything; cleaned next time

    def __enter__(self) -> PendingWrite:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _reserve(fd: int, size: int) -> None:
    try:
        os.posix_fallocate(fd, 0, size)
    except OSError as exc:
        if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL):
            raise
        # A filesystem without fallocate: write the bytes to claim the blocks all the same.
        os.write(fd, b"\0" * size)
    os.lseek(fd, 0, os.SEEK_SET)


def _why(exc: OSError) -> str:
    if exc.errno == errno.ENOSPC:
        return "no space left on the device"
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return "the folder is not writable"
    return exc.strerror or str(exc)


def _fsync_dir(folder: str) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems refuse fsync on a folder; the rename is done either way
    finally:
        os.close(fd)


def temp_files(path: str) -> list[str]:
    """The names of our temp files beside the file (a killed write leaves one), sorted; [] when
    the folder cannot be listed."""
    folder = os.path.dirname(target_of(path)) or "."
    try:
        return sorted(n for n in os.listdir(folder) if n.startswith(TMP_PREFIX))
    except OSError:
        return []


def remove_stale_temps(path: str) -> int:
    """Remove temp files our killed processes left beside the file. Returns how many."""
    folder = os.path.dirname(target_of(path)) or "."
    removed = 0
    for name in temp_files(path):
        pid_text = name[len(TMP_PREFIX) :].split(".", 1)[0]
        if pid_text.isdigit() and processes.pid_alive(int(pid_text)):
            continue
        try:
            os.unlink(os.path.join(folder, name))
            removed += 1
        except OSError:
            pass
    return removed


def world_readable(path: str) -> bool:
    try:
        return bool(os.stat(path).st_mode & 0o077)
    except OSError:
        return False


class FileStorage:
    """The credentials file, as a store.Storage."""

    kind = StorageKind.FILE
    atomic = False  # tools that rewrite it in place leave it half-written for a moment

    def __init__(self, path: str) -> None:
        self.path = path
        self.where = path
        self.lock_dir = os.path.dirname(path)

    def read(self) -> Snapshot | None:
        return read(self.path)

    def identity(self) -> Ident | None:
        return store.file_identity(self.path)

    def watched_files(self) -> list[str]:
        return [self.path]

    def writer_busy(self) -> bool | None:
        return processes.open_elsewhere(self.path)

    def pending(self, reserve: int) -> PendingWrite:
        return PendingWrite(self.path, reserve)

    def tidy(self) -> None:
        remove_stale_temps(self.path)


# doctor's checks: the file's mode, and our temp files beside it ----------------------------


def check_mode(path: str, *, fix: bool) -> list[Finding]:
    name = "file mode"
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        return [Finding(name, Level.OK, f"no file at {path} to check")]
    if not mode & 0o077:
        return [Finding(name, Level.OK, f"{path} is {mode:04o}, readable by you alone")]
    if fix:
        try:
            os.chmod(path, 0o600)
        except OSError as exc:
            said = f"{path} is {mode:04o}; chmod failed: {exc.strerror}"
            return [Finding(name, Level.FAIL, said)]
        return [Finding(name, Level.OK, f"{path} was {mode:04o}; made it 0600 (--fix)")]
    return [
        Finding(
            name,
            Level.FAIL,
            f"{path} is {mode:04o}: other users can read your login",
            f"chmod 600 {path}  (or `claude-wrap doctor --fix`)",
        )
    ]


def check_temps(path: str, *, fix: bool) -> list[Finding]:
    name = "temp files"
    leftovers = temp_files(path)
    if not leftovers:
        return [Finding(name, Level.OK, "no leftover temp files beside the credentials file")]
    if fix:
        removed = remove_stale_temps(path)
        return [Finding(name, Level.OK, f"removed {removed} leftover temp file(s) (--fix)")]
    return [
        Finding(
            name,
            Level.WARN,
            f"{len(leftovers)} temp file(s) of a killed claude-wrap beside {path}",
            "`claude-wrap doctor --fix` removes those of processes no longer running",
        )
    ]
