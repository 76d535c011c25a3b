"""Path arithmetic and file tests from `posix` alone, for the shim's hot path.

`import os` costs about 1.1 ms of CPU in the shim's `python -I -S` (it imports
`_collections_abc`, `posixpath`, `stat` and `genericpath`), the biggest part of importing the
shim, and every one of 32 shims started at once on one expired login pays it before its turn on
the folder flock (bench/run contention). `posix` is built in and already loaded. These helpers do
what os.path does for the few things the hot path needs, on str paths, exactly (tests/
test_fspath.py compares them with os.path); everything off the hot path uses os.path.
"""

from __future__ import annotations

import posix

SEP = "/"
PATHSEP = ":"  # between PATH's folders
# The file type bits of st_mode (stat.S_IFMT and friends: the same on every POSIX system).
_S_IFMT = 0o170000
_S_IFDIR = 0o040000
_S_IFREG = 0o100000


def join(first: str, *rest: str) -> str:
    """os.path.join: an absolute part starts afresh; one slash between parts unless there is
    one already."""
    path = first
    for part in rest:
        if part.startswith(SEP):
            path = part
        elif not path or path.endswith(SEP):
            path += part
        else:
            path += SEP + part
    return path


def basename(path: str) -> str:
    """os.path.basename: what follows the last slash ("" after a trailing one)."""
    return path[path.rfind(SEP) + 1 :]


def dirname(path: str) -> str:
    """os.path.dirname: up to the last slash, trailing slashes dropped unless that is all."""
    head = path[: path.rfind(SEP) + 1]
    if head and head != SEP * len(head):
        head = head.rstrip(SEP)
    return head


def isabs(path: str) -> bool:
    return path.startswith(SEP)


def normpath(path: str) -> str:
    """os.path.normpath: no '.', no empty parts, '..' taken back where it can be; POSIX keeps
    exactly two leading slashes as they are (three or more are one)."""
    if not path:
        return "."
    lead = 0
    if path.startswith(SEP):
        lead = 2 if path.startswith("//") and not path.startswith("///") else 1
    parts: list[str] = []
    for part in path.split(SEP):
        if part in ("", "."):
            continue
        if part != ".." or (not lead and not parts) or (parts and parts[-1] == ".."):
            parts.append(part)
        elif parts:
            parts.pop()
    return SEP * lead + SEP.join(parts) or "."


def abspath(path: str) -> str:
    """os.path.abspath: against the current folder, then normalised."""
    if not isabs(path):
        path = join(posix.getcwd(), path)
    return normpath(path)


def _mode(path: str) -> int | None:
    try:
        return posix.stat(path).st_mode
    except (OSError, ValueError):  # as os.path: a NUL in the path is "no such file" too
        return None


def exists(path: str) -> bool:
    return _mode(path) is not None


def isfile(path: str) -> bool:
    """os.path.isfile: a regular file, symlinks followed."""
    mode = _mode(path)
    return mode is not None and mode & _S_IFMT == _S_IFREG


def isdir(path: str) -> bool:
    """os.path.isdir: a folder, symlinks followed."""
    mode = _mode(path)
    return mode is not None and mode & _S_IFMT == _S_IFDIR


def file_id(path: str) -> tuple[int, int] | None:
    """Which file or folder `path` is, symlinks followed: (device, inode), None when there is
    none. Two paths are the same file exactly when their ids are equal (os.path.samefile)."""
    try:
        st = posix.stat(path)
    except (OSError, ValueError):
        return None
    return st.st_dev, st.st_ino


def make_private_dirs(path: str) -> None:
    """os.makedirs, but every folder it creates is 0700, not only the last one (os.makedirs
    gives the ones above it 0777 minus the umask: world-writable under umask 000)."""
    if not path or isdir(path):
        return
    parent = dirname(path)
    if parent != path:
        make_private_dirs(parent)
    try:
        posix.mkdir(path, 0o700)
    except FileExistsError:
        pass


# A file's identity: what tells a changed file from the same one. The storage layer's identity of
# a stored login (storage/store.py) is this for the file; the shim's verdict cache
# (storage/fastpath.py) remembers a file by it, on the healthy hot path, hence here, from `posix`.


def identity(st: posix.stat_result) -> tuple[int, ...]:
    """A file's identity: any write to it, by anyone, changes its ctime, a rename its inode."""
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def file_identity(path: str) -> tuple[int, ...] | None:
    """The identity of the file at `path` now, None when there is none. One stat."""
    try:
        return identity(posix.stat(path))
    except (OSError, ValueError):
        return None
