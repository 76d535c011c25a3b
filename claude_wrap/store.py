"""Reading and writing the credentials file: the only module that touches it.

Reads are bounded and never follow a path into anything but a regular file. Writes never lose a
login: a temp file in the same folder (0600 from birth, O_EXCL), fsync, rename over the file,
fsync the folder. A symlinked file is written through to its target so the link stays a link.
Space for the new file is reserved *before* a refresh token is spent, so a full disk fails early.
"""

from __future__ import annotations

import errno
import json
import os
import stat

from claude_wrap.errors import CredentialsError, WriteError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any, Protocol

    class Write(Protocol):
        """A write being prepared: `commit` stores the document atomically; leaving the
        `with` block without a commit leaves the stored login exactly as it was."""

        def commit(self, doc: Any, *, token_spent: bool) -> bool | None: ...
        def __enter__(self) -> Write: ...
        def __exit__(self, *exc: object) -> None: ...

    class Storage(Protocol):
        """Where the login lives: the file (FileStorage) or the macOS Keychain (keychain.py)."""

        kind: str
        where: str  # names it in messages: a path, or the Keychain item
        lock_dir: str  # the folder whose lock directories guard a refresh

        def read(self) -> Snapshot | None: ...
        def pending(self, reserve: int) -> Write: ...
        def tidy(self) -> None: ...


MAX_BYTES = 1 << 20  # a real file is under 4 KiB; anything past 1 MiB is not Claude Code's
TMP_PREFIX = ".credentials.json.tmp.cw."


class Snapshot:
    """The file as read once: its bytes, its parsed JSON, and its identity for change checks."""

    __slots__ = ("doc", "ident", "path", "raw")

    def __init__(self, path: str, raw: bytes, doc: Any, ident: tuple[int, ...]) -> None:
        self.path = path
        self.raw = raw
        self.doc = doc
        self.ident = ident


def identity(st: os.stat_result) -> tuple[int, ...]:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


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
    return Snapshot(path, raw, parse(path, raw), identity(st))


def parse(path: str, raw: bytes) -> Any:
    if not raw.strip():
        raise CredentialsError(path, "is empty")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CredentialsError(path, f"is not valid UTF-8 (byte {exc.start})") from None
    try:
        return json.loads(text, parse_constant=_not_json)
    except json.JSONDecodeError as exc:
        raise CredentialsError(
            path, f"is not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})"
        ) from None
    except RecursionError:
        raise CredentialsError(path, "is not valid JSON (nested too deeply)") from None
    except ValueError as exc:
        raise CredentialsError(path, f"is not valid JSON ({exc})") from None


def _not_json(name: str) -> Any:
    # Python's json reads NaN and Infinity; JSON.parse, and so Claude Code, refuses them. Judge
    # the file as Claude Code reads it, and never write such a literal back.
    raise ValueError(f"{name} is not a JSON value")


def serialise(doc: Any) -> bytes:
    """Compact, key order kept, non-ASCII as is: the way Claude Code writes it (JSON.stringify).

    ValueError for a number JSON cannot hold (1e400 reads as infinity): callers check this
    before a refresh token is spent. A lone surrogate (valid in a JSON string escape, not in
    UTF-8) falls back to ASCII escapes, which JSON.parse reads back to the same string.
    """
    text = json.dumps(doc, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(doc, separators=(",", ":"), allow_nan=False).encode("ascii")


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
        self, doc: Any, *, token_spent: bool, unless_changed: tuple[int, ...] | None = None
    ) -> bool:
        """Store `doc`; True when done. `unless_changed`: the file's identity as the caller read
        it; when the file is no longer that one at the last moment before the rename (a writer
        that takes no lock rewrote it), nothing is written and False comes back."""
        data = serialise(doc)
        try:
            view = memoryview(data)
            while view:
                n = os.write(self.fd, view)
                view = view[n:]
            os.ftruncate(self.fd, len(data))
            os.fsync(self.fd)
            os.close(self.fd)
            self.fd = -1
            if unless_changed is not None and _identity_of(self.path) != unless_changed:
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


def _identity_of(path: str) -> tuple[int, ...] | None:
    try:
        return identity(os.stat(path))
    except OSError:
        return None


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


def remove_stale_temps(path: str) -> int:
    """Remove temp files our killed processes left beside the file. Returns how many."""
    folder = os.path.dirname(target_of(path)) or "."
    removed = 0
    try:
        names = os.listdir(folder)
    except OSError:
        return 0
    for name in names:
        if not name.startswith(TMP_PREFIX):
            continue
        pid_text = name[len(TMP_PREFIX) :].split(".", 1)[0]
        if pid_text.isdigit() and pid_alive(int(pid_text)):
            continue
        try:
            os.unlink(os.path.join(folder, name))
            removed += 1
        except OSError:
            pass
    return removed


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists (one we may not signal counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def open_elsewhere(path: str) -> bool | None:
    """Whether another process has this file open now (a writer may be half-way through it);
    None where that cannot be known (no /proc). Reads /proc/*/fd of the processes we may see:
    a few milliseconds, and only ever on the rare path of a file that does not parse."""
    try:
        st = os.stat(path)
        pids = os.listdir("/proc")
    except OSError:
        return None
    if not os.path.isdir("/proc/self/fd"):
        return None
    me = str(os.getpid())
    for pid in pids:
        if not pid.isdigit() or pid == me:
            continue
        folder = f"/proc/{pid}/fd"
        try:
            fds = os.listdir(folder)
        except OSError:
            continue  # gone, or not ours to see
        for fd in fds:
            try:
                other = os.stat(f"{folder}/{fd}")
            except OSError:
                continue
            if other.st_ino == st.st_ino and other.st_dev == st.st_dev:
                return True
    return False


class FileStorage:
    """The credentials file: Linux and Windows, and macOS with CLAUDE_WRAP_STORAGE=file."""

    kind = "file"

    def __init__(self, path: str) -> None:
        self.path = path
        self.where = path
        self.lock_dir = os.path.dirname(path)

    def read(self) -> Snapshot | None:
        return read(self.path)

    def pending(self, reserve: int) -> PendingWrite:
        return PendingWrite(self.path, reserve)

    def tidy(self) -> None:
        remove_stale_temps(self.path)


def open_storage(env: Mapping[str, str] = os.environ) -> Storage:
    """The storage CLAUDE_WRAP_STORAGE selects (auto: the Keychain on macOS, else the file)."""
    from claude_wrap import paths  # noqa: PLC0415

    if paths.storage_kind(env) == "keychain":
        from claude_wrap import keychain  # noqa: PLC0415

        return keychain.KeychainStorage.for_env(env)
    return FileStorage(paths.credentials_file(env))


def world_readable(path: str) -> bool:
    try:
        return bool(os.stat(path).st_mode & 0o077)
    except OSError:
        return False
