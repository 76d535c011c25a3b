"""Other processes on this machine, as far as the login's safety needs to know them: whether a
pid still runs (a lock's holder, a temp file's writer), and whether another process has a file
open (a writer half-way through the credentials file)."""

from __future__ import annotations

import os


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
