"""A stored login's identity: what tells a changed login from the same one. Equal identities,
the same stored login; any write, by anyone, gives another.

The storage layer's, defined once here for everyone: store.py hands it on to the backends, and
the shim's verdict cache (storage/fastpath.py) remembers a file by it. That cache is on the healthy
hot path, so this module imports nothing but `posix` (not `os`: config/fspath.py says why); the
Keychain's identity needs a hash, and imports `hashlib` only when asked.
"""

from __future__ import annotations

import posix

TYPE_CHECKING = False
if TYPE_CHECKING:
    from os import stat_result

Ident = tuple[int, ...]


def identity(st: stat_result) -> Ident:
    """A file's identity: any write to it, by anyone, changes its ctime, a rename its inode."""
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def file_identity(path: str) -> Ident | None:
    """The identity of the file at `path` now, None when there is none. One stat."""
    try:
        return identity(posix.stat(path))
    except (OSError, ValueError):
        return None


def content_identity(raw: bytes) -> Ident:
    """The identity of a login that has no file (the Keychain): its length and a hash of it."""
    import hashlib  # noqa: PLC0415 - off the hot path: the file's identity needs no hash

    digest = hashlib.sha256(raw).digest()
    return (len(raw), int.from_bytes(digest[:8], "big"))
